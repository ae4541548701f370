#pragma once
// Resumable sampling: `lddpm sample` rerun into the same --out after a kill (or a preemption)
// redoes only the cases it had not finished. A case is finished when its record
// `OUT/done/<case>.json` exists, names the same sampling key and every output file of the case is
// present. Each output is written atomically and the record last, so a kill at any moment leaves
// a case either recorded with all its files or redone.
#include <optional>
#include <string>
#include <vector>

#include "core/Json.h"

namespace lddpm::launch {

// The files `lddpm sample` writes for one case, relative to --out.
std::vector<std::string> sampleCaseFiles(const std::string& caseId);

// XXH3-64 (hex) of `settings` (everything that decides a case's output: checkpoint and its
// meta.json, store manifest, sampler options, seed, batch, device...). Equal keys, equal outputs.
std::string samplingKey(const core::Json& settings);

// The seconds a finished case took when it is recorded under `key` with all its files present;
// nullopt when it has to be sampled (again).
std::optional<double> finishedCase(const std::string& out, const std::string& caseId,
                                   const std::string& key);

// Removes the temporaries a killed run left in `out` and its case folders (".<name>.tmp-PID-N..."
// files of the atomic writers): hidden, but named *.nii.gz, so a tool listing NIfTI files would
// take them for cases. Called by rank 0 before any rank writes.
void removeStaleTemporaries(const std::string& out);

// Records a finished case (atomically, after all its files are written).
void recordFinishedCase(const std::string& out, const std::string& caseId, const std::string& key,
                        double seconds);

}  // namespace lddpm::launch
