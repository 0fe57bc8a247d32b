/* kc_threads.c: the persistent thread pool of kcompile's in-process JIT (issue #11).
 *
 * kc_parallel_for(task, ctx, count) runs task(ctx, begin, end, worker) over [0, count) cut into
 * contiguous chunks (at most CHUNKS_PER_THREAD per thread; their bounds depend on count and the
 * thread setting only). The caller (worker 0) and the persistent pthreads (workers 1.., created
 * on first use) claim chunks until none is left, so a worker the OS has not scheduled yet costs
 * the call nothing: the others take its share. Which thread runs a chunk depends on timing, so a
 * task must give the same result whoever runs it (each kcompile task computes every element of
 * its range with the serial code: results do not depend on the thread count or the timing).
 * A claim is one compare-and-swap on a word holding the job's generation and the next chunk, so
 * a worker that wakes after its job is over claims nothing. count < 2, one thread, a nested call
 * (made from a task) or a concurrent one (another thread holds the pool: pthread_mutex_trylock)
 * runs inline as task(ctx, 0, count, 0) in the caller, so worker 0's data must be private to
 * the call.
 *
 * kc_parallel_jobs() counts the calls that woke the workers (the rest ran inline).
 *
 * kc_worker_scratch(worker) is a 64-byte aligned buffer of KC_WORKER_SCRATCH_BYTES owned by pool
 * worker `worker` >= 1: only the call holding the pool hands out those indices, so no two tasks
 * ever use one buffer at once.
 *
 * Built by kcompile (kcompile/codegen/jit.py: thread_pool()) with cc -O2 -fPIC -shared -pthread
 * and loaded into the process; AOT libraries never reference it.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#define KC_MAX_WORKERS 8
#define KC_WORKER_SCRATCH_BYTES (256 * 1024)
#define SPIN_ROUNDS 4000
#define CHUNKS_PER_THREAD 4

typedef void (*kc_task)(void *ctx, int64_t begin, int64_t end, int64_t worker);

static _Alignas(64) unsigned char worker_scratch[KC_MAX_WORKERS][KC_WORKER_SCRATCH_BYTES];

static pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER;   /* held by the call using the pool */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;   /* guards the job and the sleepers */
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;

static int num_threads = 1;          /* the setting (atomic access) */
static int started;                  /* worker threads running: indices 1..started (under busy) */
static uint64_t generation;          /* bumped per job (atomic; written under lock) */
static uint64_t claim;               /* (generation << 32) | next chunk of the current job (atomic) */
static int64_t pending;              /* chunks of the current job not finished (atomic) */
static int sleeping_caller;          /* the caller waits on `done` (under lock) */

static uint64_t start_generation[KC_MAX_WORKERS];
static kc_task job_task;
static void *job_ctx;
static int64_t job_count;
static int64_t job_chunks;
static int job_workers;              /* threads taking part: the caller and workers 1..job_workers-1 */
static int64_t jobs_dispatched;      /* calls handed to the workers (atomic): kc_parallel_jobs() */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Claim and run chunks of job `gen` until none is left; returns how many this thread ran. */
static int64_t run_chunks(uint64_t gen, kc_task task, void *ctx, int64_t count, int64_t chunks, int64_t worker) {
    int64_t ran = 0;
    uint64_t tag = (gen & 0xffffffffu) << 32;
    uint64_t seen = __atomic_load_n(&claim, __ATOMIC_ACQUIRE);
    for (;;) {
        if ((seen & ~(uint64_t)0xffffffffu) != tag)
            break;                                   /* another job's word: ours is over */
        int64_t c = (int64_t)(seen & 0xffffffffu);
        if (c >= chunks)
            break;
        if (!__atomic_compare_exchange_n(&claim, &seen, seen + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            continue;                                /* seen now holds the current word */
        int64_t begin = count * c / chunks, end = count * (c + 1) / chunks;
        if (begin < end)
            task(ctx, begin, end, worker);
        ran++;
        seen = __atomic_load_n(&claim, __ATOMIC_ACQUIRE);
    }
    return ran;
}

static void finish_chunks(int64_t ran) {
    if (ran && __atomic_sub_fetch(&pending, ran, __ATOMIC_ACQ_REL) == 0) {
        pthread_mutex_lock(&lock);
        if (sleeping_caller)
            pthread_cond_signal(&done);
        pthread_mutex_unlock(&lock);
    }
}

static void *worker_main(void *arg) {
    int64_t index = (int64_t)(intptr_t)arg;
#if defined(__x86_64__) || defined(__i386__)
    /* workers only run kernels: with denormals flushed to zero, as the compiled entries run */
    _mm_setcsr(_mm_getcsr() | 0x8040);
#endif
    uint64_t seen = start_generation[index];   /* the job published after its creation is its first */
    for (;;) {
        uint64_t now;
        int spins = 0;
        while ((now = __atomic_load_n(&generation, __ATOMIC_ACQUIRE)) == seen && spins < SPIN_ROUNDS) {
            cpu_relax();
            spins++;
        }
        /* take the newest job as a whole, under the lock it is written with (a worker that sat
         * out one job may see the next one's parameters only together with its generation) */
        pthread_mutex_lock(&lock);
        while ((now = __atomic_load_n(&generation, __ATOMIC_ACQUIRE)) == seen)
            pthread_cond_wait(&wake, &lock);
        seen = now;
        kc_task task = job_task;
        void *ctx = job_ctx;
        int64_t count = job_count, chunks = job_chunks;
        int n = job_workers;
        pthread_mutex_unlock(&lock);
        if (index >= n)
            continue;                                /* the setting is lower than the threads started */
        finish_chunks(run_chunks(now, task, ctx, count, chunks, index));
    }
    return NULL;
}

/* Workers 1..want-1 running (called holding busy); returns how many threads can take part. */
static int ensure_workers(int want) {
    while (started < want - 1) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        start_generation[started + 1] = __atomic_load_n(&generation, __ATOMIC_RELAXED);
        int failed = pthread_create(&thread, &attr, worker_main, (void *)(intptr_t)(started + 1));
        pthread_attr_destroy(&attr);
        if (failed)
            break;
        started++;
    }
    return started + 1 < want ? started + 1 : want;
}

static void after_fork_child(void) {
    /* the child has none of the workers: start again */
    pthread_mutex_init(&busy, NULL);
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&wake, NULL);
    pthread_cond_init(&done, NULL);
    started = 0;
    pending = 0;
    sleeping_caller = 0;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void setup(void) { pthread_atfork(NULL, NULL, after_fork_child); }

void kc_parallel_for(kc_task task, void *ctx, int64_t count) {
    if (count <= 0)
        return;
    int threads = __atomic_load_n(&num_threads, __ATOMIC_RELAXED);
    if (count < 2 || threads <= 1 || pthread_mutex_trylock(&busy) != 0) {
        task(ctx, 0, count, 0);
        return;
    }
    pthread_once(&once, setup);
    int n = ensure_workers(threads < count ? threads : (int)count);
    if (n <= 1) {
        pthread_mutex_unlock(&busy);
        task(ctx, 0, count, 0);
        return;
    }
    __atomic_add_fetch(&jobs_dispatched, 1, __ATOMIC_RELAXED);
    int64_t chunks = (int64_t)n * CHUNKS_PER_THREAD < count ? (int64_t)n * CHUNKS_PER_THREAD : count;
    pthread_mutex_lock(&lock);
    job_task = task;
    job_ctx = ctx;
    job_count = count;
    job_chunks = chunks;
    job_workers = n;
    __atomic_store_n(&pending, chunks, __ATOMIC_RELAXED);
    uint64_t gen = __atomic_load_n(&generation, __ATOMIC_RELAXED) + 1;
    __atomic_store_n(&claim, (gen & 0xffffffffu) << 32, __ATOMIC_RELEASE);
    __atomic_store_n(&generation, gen, __ATOMIC_RELEASE);   /* publishes the job */
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);

    int64_t ran = run_chunks(gen, task, ctx, count, chunks, 0);
    if (ran)
        __atomic_sub_fetch(&pending, ran, __ATOMIC_ACQ_REL);

    int spins = 0;
    while (__atomic_load_n(&pending, __ATOMIC_ACQUIRE) != 0 && spins < SPIN_ROUNDS) {
        cpu_relax();
        spins++;
    }
    if (__atomic_load_n(&pending, __ATOMIC_ACQUIRE) != 0) {
        pthread_mutex_lock(&lock);
        sleeping_caller = 1;
        while (__atomic_load_n(&pending, __ATOMIC_ACQUIRE) != 0)
            pthread_cond_wait(&done, &lock);
        sleeping_caller = 0;
        pthread_mutex_unlock(&lock);
    }
    pthread_mutex_unlock(&busy);
}

int kc_set_num_threads(int n) {
    if (n < 1)
        n = 1;
    if (n > KC_MAX_WORKERS)
        n = KC_MAX_WORKERS;
    __atomic_store_n(&num_threads, n, __ATOMIC_RELAXED);
    return n;
}

int kc_get_num_threads(void) { return __atomic_load_n(&num_threads, __ATOMIC_RELAXED); }

int kc_max_threads(void) { return KC_MAX_WORKERS; }

/* How many kc_parallel_for calls woke the workers so far (inline runs not counted): tests check
 * that small work (batch-1 calls) never does. */
int64_t kc_parallel_jobs(void) { return __atomic_load_n(&jobs_dispatched, __ATOMIC_RELAXED); }

int64_t kc_worker_scratch_bytes(void) { return KC_WORKER_SCRATCH_BYTES; }

void *kc_worker_scratch(int64_t worker) {
    if (worker < 1 || worker >= KC_MAX_WORKERS)
        return NULL;
    return worker_scratch[worker];
}
