// FlushWriterThread: the one thread libdynamo offers an embedder, for
// LmdbEngine's background flushes (include/dynamo/lmdb_engine.h). It is
// created and owned by the embedder, never by a node.
#include <pthread.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "dynamo/lmdb_engine.h"

namespace dynamo {

struct FlushWriterThread::State {
  std::mutex mu;
  std::condition_variable wake;
  std::deque<absl::AnyInvocable<void() &&>> tasks;
  bool stopping = false;
  std::thread thread;

  void Loop() {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      wake.wait(lock, [&] { return stopping || !tasks.empty(); });
      if (tasks.empty()) return;  // stopping, and everything handed over ran
      absl::AnyInvocable<void() &&> task = std::move(tasks.front());
      tasks.pop_front();
      lock.unlock();
      std::move(task)();
      lock.lock();
    }
  }
};

FlushWriterThread::FlushWriterThread() : state_(std::make_unique<State>()) {
  state_->thread = std::thread([state = state_.get()] { state->Loop(); });
  // Named so that a profile or `top -H` shows the flushes apart.
  pthread_setname_np(state_->thread.native_handle(), "dynamo-flush");
}

FlushWriterThread::~FlushWriterThread() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stopping = true;
  }
  state_->wake.notify_one();
  state_->thread.join();
}

void FlushWriterThread::Run(absl::AnyInvocable<void() &&> task) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->tasks.push_back(std::move(task));
  }
  state_->wake.notify_one();
}

}  // namespace dynamo
