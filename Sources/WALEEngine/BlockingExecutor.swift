#if canImport(Glibc)
import Glibc
#endif

/// The executor wal-e's commands run on: a pool of ordinary OS threads that grows on demand.
///
/// The pipelines (read → compress → write → fsync, download → decompress → write) are
/// synchronous CPU work and blocking system calls behind `async` signatures. On Swift's
/// cooperative pool (one thread per core) a pipeline blocked in `fsync` or a cold read holds a
/// thread that no other pipeline can use, and at most one pipeline per core makes progress
/// however many are in flight: a 2-core machine left a core idle while a backup's largest
/// partition waited for a thread. Here every runnable job gets a thread (up to `maxThreads`),
/// blocking costs nothing, and the kernel shares the cores among the pipelines.
///
/// `runMain` runs under `withTaskExecutorPreference(BlockingExecutor.shared)`, which child tasks
/// inherit, so no call site has to ask for it. Threads are created only when a job finds every
/// thread busy; a command that never blocks (`version`) creates at most one.
public final class BlockingExecutor: TaskExecutor, @unchecked Sendable {
    public static let shared = BlockingExecutor(maxThreads: 64)

    public let maxThreads: Int
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    // Guarded by `lock`.
    private var queue: [UnownedJob] = []
    private var head = 0
    private var threads = 0
    private var idle = 0
    private var members: Set<UInt> = []

    public init(maxThreads: Int) {
        self.maxThreads = max(1, maxThreads)
        pthread_mutex_init(lock, nil)
        pthread_cond_init(wake, nil)
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        pthread_mutex_lock(lock)
        queue.append(job)
        // More jobs waiting than threads waiting for jobs (a woken thread counts as idle until
        // it has taken one): one more thread.
        let spawn = queue.count - head > idle && threads < maxThreads
        if spawn { threads += 1 }
        if idle > 0 { pthread_cond_signal(wake) }
        pthread_mutex_unlock(lock)
        if spawn { startThread() }
    }

    /// Threads alive now (for tests).
    public var threadCount: Int {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return threads
    }

    /// Threads waiting for work now (for tests).
    public var idleThreadCount: Int {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return idle
    }

    /// Whether the calling thread is one of this pool's (for tests).
    public var ownsCurrentThread: Bool {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return members.contains(UInt(pthread_self()))
    }

    private func startThread() {
        let me = Unmanaged.passRetained(self).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { arg in
            Unmanaged<BlockingExecutor>.fromOpaque(arg!).takeRetainedValue().work()
            return nil
        }, me)
        pthread_attr_destroy(&attributes)
        if rc != 0 {
            // No thread: the queued job still runs on one of the threads already there (the
            // count goes back down so a later job tries again).
            Unmanaged<BlockingExecutor>.fromOpaque(me).release()
            pthread_mutex_lock(lock)
            threads -= 1
            let stranded = threads == 0
            pthread_mutex_unlock(lock)
            precondition(!stranded, "cannot start any thread (pthread_create: \(rc))")
        }
    }

    private func work() {
        let executor = asUnownedTaskExecutor()
        pthread_mutex_lock(lock)
        members.insert(UInt(pthread_self()))
        pthread_mutex_unlock(lock)
        while true {
            pthread_mutex_lock(lock)
            while head == queue.count {
                idle += 1
                pthread_cond_wait(wake, lock)
                idle -= 1
            }
            let job = queue[head]
            head += 1
            if head == queue.count {
                queue.removeAll(keepingCapacity: true)
                head = 0
            }
            pthread_mutex_unlock(lock)
            job.runSynchronously(on: executor)
        }
    }
}
