// A caching CPU allocator, installed in place of libtorch's (posix_memalign and free).
//
// Through glibc's malloc, a training step's activations are split and merged in one heap with
// every other allocation of the process, and the heap grew to about half again the bytes live at
// the step's peak (medium UNet: 1.5 GiB of heap for 1.0 GiB in use; PyTorch's process likewise). Here blocks of 128 KiB and up come from segments of
// their own (32 MiB, or the block's size when larger): best fit, split on allocation, merged with
// free neighbours on release, as PyTorch's CUDA caching allocator does. A step then reuses the
// previous step's memory without system calls or page faults, and the mapped bytes stay within a
// few percent of the live peak. Smaller blocks go to malloc.
//
// Wholly free segments are cached, not unmapped: before mapping a new segment, the least recently
// freed ones are unmapped until mapped bytes stay within half again the peak of live bytes (since
// the last reset), so a change of tensor sizes cannot pile up stale segments. `emptyCpuCache`
// unmaps them all. MDM_CPU_CACHE=0 leaves libtorch's allocator in place.
#include "common.h"

#include <c10/core/CPUAllocator.h>
#include <torch/version.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <list>
#include <mutex>
#include <set>
#include <unordered_map>

namespace {

constexpr size_t kLargeBlock = 128 << 10;
constexpr size_t kPage = 4096;
constexpr size_t kSegment = 32 << 20;
// Small blocks carry their size in a header of c10's alignment (64 bytes), so data stays aligned;
// large ones are found by address.
constexpr size_t kHeader = 64;

struct Segment;

// A piece of a segment, in use or free; free neighbours are merged as soon as both are free.
struct Block {
  char* data;
  size_t size;
  Segment* segment;
  Block* prev;  // neighbours in address order within the segment
  Block* next;
  bool free;
};

struct Segment {
  char* base;
  size_t size;
  Block* head;
  std::list<Segment*>::iterator idle;  // valid while the segment is wholly free
};

// Best fit: the smallest free block that is large enough, the lowest address among equals.
struct BySize {
  bool operator()(const Block* a, const Block* b) const {
    return a->size != b->size ? a->size < b->size : a->data < b->data;
  }
};

[[noreturn]] void out_of_memory(size_t n) {
  throw std::runtime_error("CPU allocator: out of memory allocating " + std::to_string(n) + " bytes");
}

class CachingCpuAllocator final : public c10::Allocator {
 public:
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  // From 2.3 allocate is non-const, and copy_data (for Allocator::clone) is pure virtual.
  c10::DataPtr allocate(size_t n) override { return take(n); }
  void copy_data(void* dest, const void* src, size_t count) const override { std::memcpy(dest, src, count); }
#else
  c10::DataPtr allocate(size_t n) const override { return const_cast<CachingCpuAllocator*>(this)->take(n); }
#endif
  // raw_allocate/raw_deallocate (used inside libtorch) need the context to be the data pointer.
  c10::DeleterFnPtr raw_deleter() const override { return &give; }

  void stats(int64_t* out) {
    std::lock_guard<std::mutex> lock(mu_);
    out[0] = static_cast<int64_t>(allocated_.load());
    out[1] = static_cast<int64_t>(peak_.load());
    out[2] = static_cast<int64_t>(mapped_ - allocated_large_);
    out[3] = static_cast<int64_t>(maps_);
    out[4] = static_cast<int64_t>(unmaps_);
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    while (!idle_.empty()) unmap(idle_.front());
  }

  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    peak_.store(allocated_.load());
  }

 private:
  c10::DataPtr take(size_t n) {
    if (n == 0) return {nullptr, c10::Device(c10::DeviceType::CPU)};
    return n < kLargeBlock ? take_small(n) : take_large(n);
  }

  // The data starts one or two headers into the malloc block, whichever is not on a page boundary,
  // so that a page-aligned address always means a large block. The header just before the data
  // holds the size and the offset back to the malloc block.
  c10::DataPtr take_small(size_t n) {
    void* p = nullptr;
    if (posix_memalign(&p, kHeader, n + 2 * kHeader) != 0) out_of_memory(n);
    char* data = static_cast<char*>(p) + kHeader;
    if (reinterpret_cast<uintptr_t>(data) % kPage == 0) data += kHeader;
    auto* header = reinterpret_cast<size_t*>(data - kHeader);
    header[0] = n;
    header[1] = static_cast<size_t>(data - static_cast<char*>(p));
    grow(n);
    return {data, data, &give, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DataPtr take_large(size_t n) {
    if (n > SIZE_MAX - kSegment) out_of_memory(n);
    const size_t size = (n + kPage - 1) / kPage * kPage;
    std::lock_guard<std::mutex> lock(mu_);
    Block probe{nullptr, size, nullptr, nullptr, nullptr, true};
    auto it = free_.lower_bound(&probe);
    Block* b;
    if (it != free_.end()) {
      b = *it;
      free_.erase(it);
      if (b->prev == nullptr && b->next == nullptr) idle_.erase(b->segment->idle);
    } else {
      b = map(size);
    }
    if (b->size - size >= kLargeBlock) split(b, size);
    b->free = false;
    live_.emplace(b->data, b);
    allocated_large_ += b->size;
    grow(b->size);
    return {b->data, b->data, &give, c10::Device(c10::DeviceType::CPU)};
  }

  // Small blocks count without the lock: most tensors are small, and take no other shared state.
  void grow(size_t n) {
    const size_t now = allocated_.fetch_add(n) + n;
    size_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
  }

  void split(Block* b, size_t size) {
    auto* rest = new Block{b->data + size, b->size - size, b->segment, b, b->next, true};
    if (b->next != nullptr) b->next->prev = rest;
    b->next = rest;
    b->size = size;
    free_.insert(rest);
  }

  Block* map(size_t size) {
    const size_t bytes = size < kSegment ? kSegment : size;
    size_t limit = std::max(peak_.load(), allocated_.load() + size);
    limit += limit / 2;
    while (!idle_.empty() && mapped_ + bytes > limit) unmap(idle_.front());
    void* p = map_pages(bytes);
    if (p == nullptr) {
      while (!idle_.empty()) unmap(idle_.front());
      p = map_pages(bytes);
      if (p == nullptr) out_of_memory(size);
    }
    maps_++;
    mapped_ += bytes;
    auto* seg = new Segment{static_cast<char*>(p), bytes, nullptr, {}};
    seg->head = new Block{seg->base, bytes, seg, nullptr, nullptr, true};
    return seg->head;
  }

  static void* map_pages(size_t size) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }

  void unmap(Segment* seg) {
    free_.erase(seg->head);
    idle_.erase(seg->idle);
    munmap(seg->base, seg->size);
    mapped_ -= seg->size;
    unmaps_++;
    delete seg->head;
    delete seg;
  }

  void put_back(void* data) {
    // Large blocks are page-aligned, small ones never (take_small).
    if (reinterpret_cast<uintptr_t>(data) % kPage != 0) {
      const auto* header = reinterpret_cast<const size_t*>(static_cast<char*>(data) - kHeader);
      allocated_ -= header[0];
      std::free(static_cast<char*>(data) - header[1]);
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(data);
    if (it == live_.end()) {
      // raw_deallocate of a block libtorch's own allocator (posix_memalign) gave before this one
      // was installed.
      std::free(data);
      return;
    }
    Block* b = it->second;
    live_.erase(it);
    allocated_ -= b->size;
    allocated_large_ -= b->size;
    b->free = true;
    if (b->prev != nullptr && b->prev->free) b = merge(b->prev, b);
    if (b->next != nullptr && b->next->free) b = merge(b, b->next);
    free_.insert(b);
    if (b->prev == nullptr && b->next == nullptr) b->segment->idle = idle_.insert(idle_.end(), b->segment);
  }

  // Joins two free neighbours into the first; the second may be in free_.
  Block* merge(Block* a, Block* b) {
    free_.erase(a);
    free_.erase(b);
    a->size += b->size;
    a->next = b->next;
    if (b->next != nullptr) b->next->prev = a;
    delete b;
    return a;
  }

  // raw_deallocate passes null for the empty allocations that raw_allocate handed out.
  static void give(void* data) {
    if (data != nullptr) instance()->put_back(data);
  }

 public:
  // Never destroyed: tensors freed during exit (libtorch's statics) still find it.
  static CachingCpuAllocator* instance() {
    static auto* a = new CachingCpuAllocator();
    return a;
  }

 private:
  std::mutex mu_;
  std::set<Block*, BySize> free_;
  std::list<Segment*> idle_;  // wholly free segments, least recently freed first
  std::unordered_map<void*, Block*> live_;  // large blocks in use, by data pointer
  std::atomic<size_t> allocated_{0}, peak_{0};
  size_t allocated_large_ = 0, mapped_ = 0;  // under mu_
  uint64_t maps_ = 0, unmaps_ = 0;
};

bool install() {
  const char* v = std::getenv("MDM_CPU_CACHE");
  if (v != nullptr && std::string(v) == "0") return false;
  // Priority 1 outranks libtorch's own registration (0), whichever runs first.
  c10::SetCPUAllocator(CachingCpuAllocator::instance(), 1);
  return true;
}

const bool installed = install();

}  // namespace

// Writes allocated, peak allocated, cached bytes, mappings and unmappings made so far; returns 0
// when the caching allocator is not installed (MDM_CPU_CACHE=0).
MDM_API int32_t mdm_cpu_memory_stats(int64_t* out) {
  if (!installed) return 0;
  CachingCpuAllocator::instance()->stats(out);
  return 1;
}

MDM_API void mdm_empty_cpu_cache() {
  if (installed) CachingCpuAllocator::instance()->empty_cache();
}

MDM_API void mdm_reset_cpu_peak_memory() {
  if (installed) CachingCpuAllocator::instance()->reset_peak();
}
