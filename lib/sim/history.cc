#include "dynamo/sim/history.h"

#include <cassert>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "dynamo/sim/sim_network.h"
#include "xxhash.h"

namespace dynamo::sim {
namespace {

const char* OutcomeName(OpOutcome o) {
  switch (o) {
    case OpOutcome::kPending: return "pending";
    case OpOutcome::kOk: return "ok";
    case OpOutcome::kFail: return "fail";
    case OpOutcome::kTimeout: return "timeout";
  }
  return "?";
}

double MsSinceEpoch(absl::Time t) {
  return absl::ToDoubleMilliseconds(t - SimNetwork::Epoch());
}

OpOutcome OutcomeOf(const absl::Status& status) {
  if (status.ok()) return OpOutcome::kOk;
  if (status.code() == absl::StatusCode::kDeadlineExceeded) return OpOutcome::kTimeout;
  return OpOutcome::kFail;
}

}  // namespace

std::string DotString(const Dot& dot) { return absl::StrCat(dot.actor, ":", dot.counter); }

std::string AbbreviateValue(const std::string& value) {
  if (value.size() <= 48) return value;
  return absl::StrCat(value.substr(0, 40), "...(", value.size(), " bytes)");
}

size_t History::Invoke(uint32_t client, OpType type, std::string bucket, std::string key,
                       std::string value, Context context, absl::Time now) {
  Operation op;
  op.index = ops_.size();
  op.client = client;
  op.type = type;
  op.bucket = std::move(bucket);
  op.key = std::move(key);
  op.value = std::move(value);
  op.context = std::move(context);
  op.invoke_time = now;
  ops_.push_back(std::move(op));
  return ops_.size() - 1;
}

void History::SetElement(size_t index, std::string element) {
  ops_.at(index).element = std::move(element);
}

void History::CompleteGet(size_t index, absl::Time now, const absl::StatusOr<GetResult>& result) {
  Operation& op = ops_.at(index);
  assert(op.outcome == OpOutcome::kPending && op.type == OpType::kGet);
  op.complete_time = now;
  op.outcome = OutcomeOf(result.status());
  if (result.ok()) {
    op.values = result->values;
    op.versions = result->versions;
    op.context = result->context;
  } else {
    op.error = std::string(result.status().message());
  }
}

void History::CompletePut(size_t index, absl::Time now, const absl::Status& status) {
  Operation& op = ops_.at(index);
  assert(op.outcome == OpOutcome::kPending && op.type == OpType::kPut);
  op.complete_time = now;
  op.outcome = OutcomeOf(status);
  if (!status.ok()) op.error = std::string(status.message());
}

void History::SetPutDot(size_t index, const Dot& dot) { ops_.at(index).dot = dot; }

void History::MarkFinalRead(size_t index) { ops_.at(index).final_read = true; }

std::string History::Summary() const {
  uint64_t counts[2][4] = {};
  for (const Operation& op : ops_) {
    ++counts[op.type == OpType::kPut][static_cast<int>(op.outcome)];
  }
  auto line = [&](int t) {
    return absl::StrCat(counts[t][1], " ok/", counts[t][2], " fail/", counts[t][3], " timeout/",
                        counts[t][0], " pending");
  };
  return absl::StrCat("puts ", line(1), ", gets ", line(0));
}

std::string History::Format(size_t index) const {
  const Operation& op = ops_.at(index);
  std::string out = absl::StrCat("#", op.index, " c", op.client, " [",
                                 absl::StrFormat("%.3f", MsSinceEpoch(op.invoke_time)), "..");
  if (op.outcome != OpOutcome::kPending) {
    absl::StrAppend(&out, absl::StrFormat("%.3f", MsSinceEpoch(op.complete_time)));
  }
  absl::StrAppend(&out, " ms] ", op.type == OpType::kPut ? "put " : "get ", op.key, " ");
  if (op.type == OpType::kPut) {
    absl::StrAppend(&out, "\"", AbbreviateValue(op.value), "\" ctx=", op.context.clock.DebugString());
    if (op.dot.has_value()) absl::StrAppend(&out, " dot=", DotString(*op.dot));
  }
  absl::StrAppend(&out, " -> ", OutcomeName(op.outcome));
  if (op.final_read) absl::StrAppend(&out, " (final)");
  if (op.type == OpType::kGet && op.outcome == OpOutcome::kOk) {
    std::vector<std::string> parts;
    for (const Version& v : op.versions) {
      parts.push_back(absl::StrCat(DotString(v.dot), v.tombstone ? "=<tombstone>" : "=\"" + AbbreviateValue(v.value) + "\""));
    }
    absl::StrAppend(&out, " {", absl::StrJoin(parts, ", "), "}");
  }
  if (!op.error.empty()) absl::StrAppend(&out, " (", op.error, ")");
  return out;
}

std::string History::Dump(size_t lines_max) const {
  // The end of a run (the final reads, the last writes) is what a failure
  // report needs most, so the earliest operations are the ones left out.
  std::string out;
  size_t first = ops_.size() > lines_max ? ops_.size() - lines_max : 0;
  if (first > 0) absl::StrAppend(&out, "... ", first, " earlier operations\n");
  for (size_t i = first; i < ops_.size(); ++i) absl::StrAppend(&out, Format(i), "\n");
  return out;
}

uint64_t History::Digest() const {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  for (size_t i = 0; i < ops_.size(); ++i) {
    std::string line = Format(i);
    XXH3_64bits_update(state, line.data(), line.size());
  }
  uint64_t digest = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return digest;
}

}  // namespace dynamo::sim
