// Process groups on libtorch's own distributed engine, c10d (what PyTorch's DDP runs on): a TCPStore
// for the rendezvous, Gloo for CPU tensors, NCCL for CUDA tensors in CUDA builds. mdm adds only the
// handle, the checks that turn a misconfigured launch into a clear error, and DDP-style buckets.
//
// Built without Gloo (MDM_NO_GLOO=1: build.sh found no gloo/ headers, which libtorch does not ship;
// =2: the libtorch has no Gloo) or without NCCL (no MDM_WITH_NCCL), the functions still exist and
// fail, naming what is missing.
#include "common.h"

#include <ATen/ops/cat.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#include <torch/version.h>

// 1.x runs collectives on a ProcessGroup; 2.x moved them to a Backend that a ProcessGroup wraps.
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
using Collectives = c10d::Backend;
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
using Collectives = c10d::ProcessGroup;
#endif

#ifndef MDM_NO_GLOO
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef MDM_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

struct mdm_process_group_s {
  c10::intrusive_ptr<c10d::Store> store;  // rank 0's serves the others: it lives as long as the group
  c10::intrusive_ptr<Collectives> group;
  int32_t rank;
  int32_t size;
  int32_t backend;
  std::chrono::milliseconds timeout;
};

namespace {

using ms = std::chrono::milliseconds;

// Deadlines add the timeout to the clock's nanoseconds: a year stays far from overflow.
constexpr int64_t kMaxTimeoutMs = 365LL * 24 * 3600 * 1000;

std::string where(const std::string& addr, int32_t port) { return addr + ":" + std::to_string(port); }

// An exception's message without libtorch's C++ backtrace.
std::string text(const std::exception& e) {
  if (auto* c = dynamic_cast<const c10::Error*>(&e)) return c->what_without_backtrace();
  return e.what();
}

std::vector<uint8_t> bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

// 2.x serves the store on the libuv it links in statically, by default. Deno exports uv_* functions
// of its own (for Node-API addons), which the loader binds in their place: the store crashes in
// uv_listen. The store's older socket server (the only one 1.x has) uses no libuv.
template <typename Options>
auto without_libuv(Options& o, int) -> decltype(o.useLibUV = false, void()) {
  o.useLibUV = false;
}
template <typename Options>
void without_libuv(Options&, long) {}

// Tries to open a connection to addr:port, for at most `budget`; returns why not, or "" once it did.
std::string try_connect(const std::string& addr, int32_t port, ms budget) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int rc = getaddrinfo(addr.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0) return std::string("cannot resolve ") + addr + ": " + gai_strerror(rc);
  std::string why = "no address";
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int err = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : errno;
    if (err == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      if (poll(&p, 1, static_cast<int>(std::clamp<int64_t>(budget.count(), 1, 30000))) == 1) {
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      } else {
        err = ETIMEDOUT;
      }
    }
    close(fd);
    if (err == 0) {
      freeaddrinfo(found);
      return "";
    }
    why = std::strerror(err);
  }
  freeaddrinfo(found);
  return why;
}

// Waits until rank 0's store accepts connections. c10d's own client retries too, but 2.x may add a
// back-off delay past the timeout; this keeps an unreachable master within it.
void reach(const std::string& addr, int32_t port, int32_t rank, ms timeout, const std::string& master) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<ms>(deadline - std::chrono::steady_clock::now());
    std::string why = try_connect(addr, port, std::max(left, ms(1)));
    if (why.empty()) return;
    left = std::chrono::duration_cast<ms>(deadline - std::chrono::steady_clock::now());
    if (left <= ms(0))
      throw std::runtime_error("rank " + std::to_string(rank) + " cannot reach the rendezvous store of rank 0 at " +
                               master + " (MASTER_ADDR:MASTER_PORT) within " + std::to_string(timeout.count()) +
                               " ms: " + why);
    std::this_thread::sleep_for(std::min(left, ms(100)));
  }
}

// Every rank learns rank 0's world size and claims its rank before the backend's own rendezvous, so
// that a launch with disagreeing WORLD_SIZE or a repeated RANK fails with that said, and a rank that
// never comes makes the others fail with a count of who did, instead of the backend's bare timeout.
void join(c10d::Store& store, int32_t rank, int32_t size, ms timeout, const std::string& master) {
  const std::string world = "mdm/world_size";
  if (rank == 0) {
    store.set(world, bytes(std::to_string(size)));
  } else {
    try {
      store.wait({world}, timeout);
    } catch (const std::exception& e) {
      throw std::runtime_error("rank " + std::to_string(rank) + " reached " + master + " but found no group there within " +
                               std::to_string(timeout.count()) + " ms (is MASTER_PORT another program's?): " + text(e));
    }
    auto v = store.get(world);
    int64_t theirs = std::stoll(std::string(v.begin(), v.end()));
    if (theirs != size)
      throw std::invalid_argument("rank " + std::to_string(rank) + " was started with world size " +
                                  std::to_string(size) + ", but rank 0 (the master at " + master + ") with " +
                                  std::to_string(theirs) + ": every rank needs the same WORLD_SIZE");
  }
  if (store.add("mdm/rank/" + std::to_string(rank), 1) != 1)
    throw std::invalid_argument("rank " + std::to_string(rank) + " of the group at " + master +
                                " is already taken: two processes were started with RANK=" + std::to_string(rank));
  if (store.add("mdm/joined", 1) == size) store.set("mdm/all_joined", bytes("1"));
  try {
    store.wait({"mdm/all_joined"}, timeout);
  } catch (const std::exception&) {
    int64_t joined = store.add("mdm/joined", 0);
    throw std::runtime_error("only " + std::to_string(joined) + " of " + std::to_string(size) +
                             " ranks joined the group at " + master + " within " + std::to_string(timeout.count()) +
                             " ms (the others were not started, failed, or have another MASTER_ADDR, MASTER_PORT "
                             "or WORLD_SIZE)");
  }
}

#ifndef MDM_NO_GLOO
// This machine's address on the route to addr (the kernel picks it when a UDP socket connects,
// sending nothing), or "" when there is none.
std::string route_source(const std::string& addr) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(addr.c_str(), "9", &hints, &found) != 0) return "";
  std::string source;
  for (addrinfo* ai = found; ai != nullptr && source.empty(); ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    char name[INET6_ADDRSTRLEN] = {0};
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      const void* bytes = local.ss_family == AF_INET6
                              ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr)
                              : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr);
      if (inet_ntop(local.ss_family, bytes, name, sizeof name) != nullptr) source = name;
    }
    close(fd);
  }
  freeaddrinfo(found);
  return source;
}

// Where Gloo listens for its peers: GLOO_SOCKET_IFNAME's interface, as in PyTorch; otherwise this
// machine's address on the route to the master, which the other machines can reach (PyTorch's
// default, the address the hostname resolves to, is often 127.0.x.1 in /etc/hosts); loopback when
// all ranks run here.
std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master_addr) {
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  if (ifname != nullptr && *ifname != '\0') {
    std::string name(ifname);
    return c10d::ProcessGroupGloo::createDeviceForInterface(name.substr(0, name.find(',')));
  }
  std::string source = route_source(master_addr);
  if (!source.empty()) return c10d::ProcessGroupGloo::createDeviceForHostname(source);
  return c10d::ProcessGroupGloo::createDefaultDevice();
}
#endif

// Fails before any connection is made when this build lacks the backend.
void require(int32_t backend) {
  if (backend == MDM_DIST_BACKEND_GLOO) {
#if defined(MDM_NO_GLOO) && MDM_NO_GLOO == 2
    throw std::runtime_error("the libtorch mdm was built against has no Gloo (no c10d::ProcessGroupGloo)");
#elif defined(MDM_NO_GLOO)
    throw std::runtime_error("mdm was built without Gloo headers (libtorch does not ship them): install libgloo-dev "
                             "and rebuild with native/build.sh");
#endif
    return;
  }
  if (backend == MDM_DIST_BACKEND_NCCL) {
#ifndef MDM_WITH_NCCL
    throw std::runtime_error("mdm was built without NCCL: it needs a CUDA libtorch (libtorch_cuda) and the NCCL "
                             "and CUDA headers when native/build.sh runs");
#endif
    return;
  }
  throw std::invalid_argument("unknown backend code " + std::to_string(backend));
}

c10::intrusive_ptr<Collectives> make_group(int32_t backend, const c10::intrusive_ptr<c10d::Store>& store,
                                           int32_t rank, int32_t size, ms timeout, const std::string& addr) {
  require(backend);
#ifndef MDM_NO_GLOO
  if (backend == MDM_DIST_BACKEND_GLOO) {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(gloo_device(addr));
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
  }
#endif
#ifdef MDM_WITH_NCCL
  if (backend == MDM_DIST_BACKEND_NCCL) {
    // Blocking wait makes a collective's wait() return or throw within the timeout instead of
    // leaving the failure to a watchdog that aborts the process (1.x reads the older name).
    setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
    setenv("NCCL_BLOCKING_WAIT", "1", 0);
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
  }
#endif
  throw std::logic_error("backend code " + std::to_string(backend) + " passed require()");
}

mdm_process_group_s& group(mdm_process_group* pg) {
  if (pg == nullptr) throw std::invalid_argument("null process group handle");
  return *pg;
}

// Waits for one collective. Gloo enforces the timeout on each transfer, and its error names the
// peer; the wait's own bound is only a backstop. NCCL's blocking wait needs it.
void finish(mdm_process_group_s& pg, const c10::intrusive_ptr<c10d::Work>& work) {
  ms bound = pg.backend == MDM_DIST_BACKEND_NCCL ? pg.timeout : pg.timeout + std::max(pg.timeout, ms(10000));
  work->wait(bound);
}

c10d::ReduceOp reduce_op(mdm_process_group_s& pg, int32_t op) {
  if (op == MDM_DIST_REDUCE_SUM) return c10d::ReduceOp::SUM;
  if (op == MDM_DIST_REDUCE_MEAN) return pg.backend == MDM_DIST_BACKEND_NCCL ? c10d::ReduceOp::AVG : c10d::ReduceOp::SUM;
  throw std::invalid_argument("unknown reduce op code " + std::to_string(op));
}

// Gloo has no AVG: the mean is the sum divided here.
void finish_mean(mdm_process_group_s& pg, int32_t op, at::Tensor& t) {
  if (op == MDM_DIST_REDUCE_MEAN && pg.backend != MDM_DIST_BACKEND_NCCL) t.div_(pg.size);
}

void check_mean(int32_t op, const at::Tensor& t) {
  if (op == MDM_DIST_REDUCE_MEAN && !at::isFloatingType(t.scalar_type()))
    throw std::invalid_argument("mean needs a floating-point tensor, got " + std::string(c10::toString(t.scalar_type())));
}

// The collective's buffer: the tensor itself when the backend can take it (dense and contiguous),
// otherwise a contiguous copy that `settle` writes back. Detached, so that parameters that require
// grad are updated in place as data.
at::Tensor buffer(const at::Tensor& t) { return t.detach().contiguous(); }

void settle(const at::Tensor& original, const at::Tensor& buf) {
  if (buf.data_ptr() != original.data_ptr()) original.detach().copy_(buf);
}

int32_t root_rank(const mdm_process_group_s& g, int32_t root) {
  if (root < 0 || root >= g.size)
    throw std::invalid_argument("root rank " + std::to_string(root) + " is not in 0.." + std::to_string(g.size - 1));
  return root;
}

// Consecutive tensors of one dtype and device, flattened into one buffer for one collective.
struct Bucket {
  std::vector<at::Tensor> tensors;  // detached: parameters that require grad change as data
  at::Tensor flat;

  // A lone contiguous tensor is its own buffer; otherwise the buffer is a copy of the tensors.
  void flatten() {
    if (tensors.size() == 1) {
      flat = buffer(tensors[0]).view({-1});
      return;
    }
    std::vector<at::Tensor> parts;
    for (const auto& t : tensors) parts.push_back(t.reshape({-1}));
    flat = at::cat(parts);
  }

  void unflatten() {
    int64_t offset = 0;
    for (auto& t : tensors) {
      auto part = flat.narrow(0, offset, t.numel()).view(t.sizes());
      if (part.data_ptr() != t.data_ptr()) t.copy_(part);
      offset += t.numel();
    }
  }
};

// Fills buckets in order up to bucket_bytes each, as DDP's reducer does: a tensor larger than that
// gets a bucket of its own, and a change of dtype or device starts a new one. Empty tensors take no
// part.
std::vector<Bucket> bucketize(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes) {
  if (bucket_bytes < 1) throw std::invalid_argument("bucket size " + std::to_string(bucket_bytes) + " bytes is below 1");
  std::vector<Bucket> buckets;
  int64_t filled = 0;
  for (const auto& t : tensors) {
    if (t.numel() == 0) continue;
    int64_t size = t.numel() * static_cast<int64_t>(t.element_size());
    bool fits = !buckets.empty() && filled + size <= bucket_bytes &&
                buckets.back().tensors[0].scalar_type() == t.scalar_type() &&
                buckets.back().tensors[0].device() == t.device();
    if (!fits) {
      buckets.emplace_back();
      filled = 0;
    }
    buckets.back().tensors.push_back(t.detach());
    filled += size;
  }
  for (auto& b : buckets) b.flatten();
  return buckets;
}

// Starts one collective per bucket, then waits for all of them, even after a failure, so that none
// is still running on a buffer when this returns; the first failure is rethrown.
template <typename Launch>
void run_buckets(mdm_process_group_s& g, std::vector<Bucket>& buckets, Launch launch) {
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  std::exception_ptr first;
  try {
    for (auto& b : buckets) {
      std::vector<at::Tensor> one{b.flat};
      works.push_back(launch(one));
    }
  } catch (...) {
    first = std::current_exception();
  }
  for (auto& w : works) {
    try {
      finish(g, w);
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace

MDM_API int32_t mdm_dist_backend_available(int32_t backend) {
  switch (backend) {
    case MDM_DIST_BACKEND_GLOO:
#ifdef MDM_NO_GLOO
      return 0;
#else
      return 1;
#endif
    case MDM_DIST_BACKEND_NCCL:
#ifdef MDM_WITH_NCCL
      return 1;
#else
      return 0;
#endif
  }
  return 0;
}

MDM_API mdm_process_group* mdm_pg_new(const char* master_addr, int32_t master_port, int32_t rank, int32_t world_size,
                                      int32_t backend, int64_t timeout_ms, mdm_status* st) {
  GUARD(st, nullptr, {
    if (master_addr == nullptr || *master_addr == '\0') throw std::invalid_argument("empty master address");
    if (master_port < 1 || master_port > 65535)
      throw std::invalid_argument("master port " + std::to_string(master_port) + " is not in 1..65535");
    if (world_size < 1) throw std::invalid_argument("world size " + std::to_string(world_size) + " is below 1");
    if (rank < 0 || rank >= world_size)
      throw std::invalid_argument("rank " + std::to_string(rank) + " is not in 0.." + std::to_string(world_size - 1) +
                                  " for world size " + std::to_string(world_size));
    if (timeout_ms < 1 || timeout_ms > kMaxTimeoutMs)
      throw std::invalid_argument("timeout " + std::to_string(timeout_ms) + " ms is not in 1.." +
                                  std::to_string(kMaxTimeoutMs) + " ms (a year)");
    require(backend);

    std::string addr(master_addr);
    std::string master = where(addr, master_port);
    ms timeout(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<uint16_t>(master_port);
    opts.isServer = rank == 0;
    opts.numWorkers = static_cast<size_t>(world_size);
    opts.waitWorkers = false;
    opts.timeout = timeout;
    without_libuv(opts, 0);
    // Rank 0 serves the store on every interface and reaches it over loopback: MASTER_ADDR is how
    // the others find this machine, which rank 0 need not be able to check.
    if (rank != 0) reach(addr, master_port, rank, timeout, master);
    c10::intrusive_ptr<c10d::Store> store;
    try {
      store = c10::make_intrusive<c10d::TCPStore>(rank == 0 ? "127.0.0.1" : addr, opts);
    } catch (const std::exception& e) {
      if (rank == 0)
        throw std::runtime_error("rank 0 cannot serve the rendezvous store on port " + std::to_string(master_port) +
                                 " (MASTER_PORT): " + text(e));
      throw std::runtime_error("rank " + std::to_string(rank) + " cannot connect to the rendezvous store of rank 0 at " +
                               master + " (MASTER_ADDR:MASTER_PORT): " + text(e));
    }
    join(*store, rank, world_size, timeout, master);
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("mdm/backend", store);
    auto g = make_group(backend, prefixed, rank, world_size, timeout, addr);
    return new mdm_process_group_s{store, g, rank, world_size, backend, timeout};
  })
}

MDM_API void mdm_pg_free(mdm_process_group* pg) { delete pg; }

MDM_API int32_t mdm_pg_broadcast(mdm_process_group* pg, mdm_tensor t, int32_t root, mdm_status* st) {
  GUARD_STATUS(st, {
    auto& g = group(pg);
    c10d::BroadcastOptions o;
    o.rootRank = root_rank(g, root);
    const auto& original = mdm::ref(t);
    std::vector<at::Tensor> bufs{buffer(original)};
    finish(g, g.group->broadcast(bufs, o));
    settle(original, bufs[0]);
  })
}

MDM_API int32_t mdm_pg_all_reduce(mdm_process_group* pg, mdm_tensor t, int32_t op, mdm_status* st) {
  GUARD_STATUS(st, {
    auto& g = group(pg);
    const auto& original = mdm::ref(t);
    check_mean(op, original);
    std::vector<at::Tensor> bufs{buffer(original)};
    c10d::AllreduceOptions o;
    o.reduceOp = reduce_op(g, op);
    finish(g, g.group->allreduce(bufs, o));
    finish_mean(g, op, bufs[0]);
    settle(original, bufs[0]);
  })
}

// As DDP's reducer: every bucket in flight at once, one collective each, the results copied back.
// Returns the number of buckets.
MDM_API int32_t mdm_pg_all_reduce_buckets(mdm_process_group* pg, const mdm_tensor* ts, int32_t n, int32_t op,
                                          int64_t bucket_bytes, mdm_status* st) {
  GUARD(st, -1, {
    auto& g = group(pg);
    auto tensors = mdm::tensors(ts, n);
    for (const auto& t : tensors) check_mean(op, t);
    c10d::AllreduceOptions o;
    o.reduceOp = reduce_op(g, op);
    auto buckets = bucketize(tensors, bucket_bytes);
    run_buckets(g, buckets, [&](std::vector<at::Tensor>& flat) { return g.group->allreduce(flat, o); });
    for (auto& b : buckets) {
      finish_mean(g, op, b.flat);
      b.unflatten();
    }
    return static_cast<int32_t>(buckets.size());
  })
}

MDM_API int32_t mdm_pg_broadcast_buckets(mdm_process_group* pg, const mdm_tensor* ts, int32_t n, int32_t root,
                                         int64_t bucket_bytes, mdm_status* st) {
  GUARD(st, -1, {
    auto& g = group(pg);
    c10d::BroadcastOptions o;
    o.rootRank = root_rank(g, root);
    auto buckets = bucketize(mdm::tensors(ts, n), bucket_bytes);
    run_buckets(g, buckets, [&](std::vector<at::Tensor>& flat) { return g.group->broadcast(flat, o); });
    for (auto& b : buckets) b.unflatten();
    return static_cast<int32_t>(buckets.size());
  })
}

MDM_API int32_t mdm_pg_barrier(mdm_process_group* pg, mdm_status* st) {
  GUARD_STATUS(st, {
    auto& g = group(pg);
    finish(g, g.group->barrier(c10d::BarrierOptions()));
  })
}
