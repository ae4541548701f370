#pragma once
// What every evaluation report shares: mean ± sample sd over the cases that have a value, JSON
// numbers that stay valid JSON (NaN and infinities become null), and table cells ("n/a", "inf").
#include <string>
#include <vector>

#include "core/Json.h"

namespace lddpm::launch::evaluation {

struct Summary {
  double mean = 0;
  double sd = 0;  // sample standard deviation (n − 1); NaN below two values
  int count = 0;  // values that are not NaN
};

// Mean and sample sd of the values that are not NaN (both NaN when none is).
Summary summarize(const std::vector<double>& values);

// JSON has no NaN or infinity: undefined values (empty region, identical scans' PSNR) are null.
core::Json number(double value);

// A table cell: 6 significant digits, "n/a" for NaN, "inf"/"-inf".
std::string formatValue(double value);
// "mean ± sd" of summarize(values), each as formatValue.
std::string meanSd(const std::vector<double>& values);

}  // namespace lddpm::launch::evaluation
