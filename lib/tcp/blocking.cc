#include "dynamo/blocking.h"

#include <chrono>
#include <future>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace dynamo {

namespace {

// Waits for `future` at most `wait_max`; the promise lives in a shared_ptr
// held by the callback, so a late answer after a timeout is harmless.
template <typename T>
absl::StatusOr<T> WaitFor(std::future<T>& future, absl::Duration wait_max, const char* what) {
  if (future.wait_for(absl::ToChronoNanoseconds(wait_max)) != std::future_status::ready) {
    return absl::DeadlineExceededError(absl::StrCat(
        what, ": no answer from the node's loop within ", absl::FormatDuration(wait_max)));
  }
  return future.get();
}

}  // namespace

BlockingNode::BlockingNode(Node* node, LoopExecutor executor, absl::Duration wait_max)
    : node_(node), executor_(std::move(executor)), wait_max_(wait_max) {}

absl::StatusOr<GetResult> BlockingNode::Get(std::string_view bucket, std::string_view key) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<GetResult>>>();
  std::future<absl::StatusOr<GetResult>> future = promise->get_future();
  executor_([node = node_, promise, bucket = std::string(bucket), key = std::string(key)] {
    node->Get(bucket, key, [promise](absl::StatusOr<GetResult> r) {
      promise->set_value(std::move(r));
    });
  });
  absl::StatusOr<absl::StatusOr<GetResult>> r = WaitFor(future, wait_max_, "get");
  if (!r.ok()) return r.status();
  return std::move(*r);
}

absl::Status BlockingNode::Put(std::string_view bucket, std::string_view key,
                               const Context& context, std::string value) {
  auto promise = std::make_shared<std::promise<absl::Status>>();
  std::future<absl::Status> future = promise->get_future();
  executor_([node = node_, promise, bucket = std::string(bucket), key = std::string(key), context,
             value = std::move(value)]() mutable {
    node->Put(bucket, key, context, std::move(value),
              [promise](absl::Status s) { promise->set_value(std::move(s)); });
  });
  absl::StatusOr<absl::Status> r = WaitFor(future, wait_max_, "put");
  return r.ok() ? *r : r.status();
}

absl::Status BlockingNode::Delete(std::string_view bucket, std::string_view key,
                                  const Context& context) {
  auto promise = std::make_shared<std::promise<absl::Status>>();
  std::future<absl::Status> future = promise->get_future();
  executor_([node = node_, promise, bucket = std::string(bucket), key = std::string(key),
             context] {
    node->Delete(bucket, key, context,
                 [promise](absl::Status s) { promise->set_value(std::move(s)); });
  });
  absl::StatusOr<absl::Status> r = WaitFor(future, wait_max_, "delete");
  return r.ok() ? *r : r.status();
}

absl::Status BlockingNode::RunOnLoop(absl::AnyInvocable<void(Node&)> fn) {
  auto promise = std::make_shared<std::promise<bool>>();
  std::future<bool> future = promise->get_future();
  executor_([node = node_, promise, fn = std::move(fn)]() mutable {
    fn(*node);
    promise->set_value(true);
  });
  absl::StatusOr<bool> r = WaitFor(future, wait_max_, "run on loop");
  return r.status();
}

}  // namespace dynamo
