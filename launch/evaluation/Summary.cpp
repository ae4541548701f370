#include "launch/evaluation/Summary.h"

#include <cmath>
#include <cstdio>

namespace lddpm::launch::evaluation {

Summary summarize(const std::vector<double>& all) {
  std::vector<double> values;
  for (double v : all) {
    if (!std::isnan(v)) values.push_back(v);
  }
  Summary s;
  s.count = static_cast<int>(values.size());
  s.mean = s.sd = std::nan("");
  if (values.empty()) return s;
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / s.count;
  if (s.count > 1) {
    double squares = 0;
    for (double v : values) squares += (v - s.mean) * (v - s.mean);
    s.sd = std::sqrt(squares / (s.count - 1));
  }
  return s;
}

core::Json number(double value) {
  return std::isfinite(value) ? core::Json(value) : core::Json(nullptr);
}

std::string formatValue(double value) {
  if (std::isnan(value)) return "n/a";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", value);
  return buf;
}

std::string meanSd(const std::vector<double>& values) {
  const Summary s = summarize(values);
  return formatValue(s.mean) + " ± " + formatValue(s.sd);
}

}  // namespace lddpm::launch::evaluation
