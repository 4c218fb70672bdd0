// Internal: a lock word in shared memory (a host region) that survives the death of its holder.
//
// Host scope keeps some per-key state that one compare-and-swap cannot update (the exact sliding
// window's ring of times). Such a key carries one int64 lock word: 0 when free, else the holder's
// pid with its pid namespace's tag above it (tag << 32 | pid). Taking it is a CAS 0 -> that word. A waiter spins (pause, then sched_yield), and
// every kCheckEvery rounds asks whether the holder is still alive; when it is not (no such
// process, or a zombie that its parent has not reaped yet), the waiter takes the word over by a
// CAS from that holder's pid, so a process killed inside the critical section (SIGKILL, OOM
// killer) blocks the key only until the next waiter's check: microseconds, plus one kill(2) and
// one read of /proc/<pid>/stat.
//
// The new holder learns that it took over (Lock returns kTookOver) and must repair what the dead
// holder may have left half-written.
//
// Bounds and assumptions (documented in docs/architecture.md, "Exact sliding windows"):
//  * A holder is judged only by processes of its own pid namespace. Containers that share the
//    region (`ipc:`) but not their pids never take a word over from each other: a holder of
//    another namespace that dies inside the critical section (a few hundred nanoseconds)
//    blocks its key until a process of its namespace comes by, or for good if none does.
//  * A holder that is alive but stopped (SIGSTOP, a debugger) blocks its key until it continues,
//    as any lock does; waiters never steal from a live process, so they never corrupt the key.
//  * A dead holder's pid reused by a new process before anyone checks keeps the key blocked until
//    that process exits: pids cycle through pid_max (4 million by default) first.
#ifndef SLUICE_LIB_STORES_SHARED_KEY_LOCK_H_
#define SLUICE_LIB_STORES_SHARED_KEY_LOCK_H_

#include <cstdint>

namespace sluice {
inline namespace v1 {
namespace internal {

class SharedKeyLock {
 public:
  enum class Taken { kFree, kTookOver };
  // Spin rounds between two liveness checks of the holder.
  static constexpr int kCheckEvery = 4096;

  // Takes the lock word `word` (8-byte aligned, in shared memory). Never fails; returns whether
  // it was taken from a dead holder.
  static Taken Lock(int64_t* word);
  // Releases it. REQUIRES: held by this process (this thread).
  static void Unlock(int64_t* word);
  // Whether process `pid` is gone: no such process, or a zombie (dead, not yet reaped).
  static bool IsDead(int64_t pid);
  // The word a holder `pid` of this process's pid namespace writes.
  static int64_t WordOf(int64_t pid);
  // Whether a waiter may take the word `holder` over: its holder is of this pid namespace and
  // dead.
  static bool MayTakeOver(int64_t holder);
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_STORES_SHARED_KEY_LOCK_H_
