// TimerWheel<T>: a hierarchical hashed timing wheel for a large number of
// pending timers (a million deferred recipients waiting for their retry
// time) with O(1) insertion and O(1) amortised expiry.
//
// Time is cut into ticks (default 1 s). An entry with due time d fires at
// tick ceil(d / tick): DrainDue/PopDue return it at the first call whose
// `now` is at or after that tick boundary, so never before `d` and at most
// one tick late. Levels:
//   level 0: 4096 slots of one tick (the next ~68 minutes at 1 s ticks);
//   level 1: 4096 slots of 4096 ticks (~194 days), cascaded into level 0
//            when the wheel enters each slot's block;
//   overflow: anything further, re-examined once per level-1 revolution.
// Entries that are due but not yet taken (callers take at most max_count at
// a time) wait in a FIFO "ready" list, so they come out in roughly due
// order: by tick, and in insertion order within a tick.
//
// Memory: entries live in a chunked node pool (one node = T + 12 bytes,
// rounded to T's alignment: 48 bytes for the 32-byte QueuedRecipient),
// linked into slots by 32-bit indexes. The fixed part is ~70 KB. The pool
// keeps its peak size until the wheel is empty again.
//
// Time that goes backwards is ignored (nothing new becomes due); an entry
// inserted with a due time already reached is ready at once.
//
// Thread-safety: not synchronised; one owner thread.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/check.h"
#include "base/clock.h"

namespace hikyaku::queue {

template <typename T>
class TimerWheel {
  static_assert(std::is_default_constructible_v<T> && std::is_move_assignable_v<T>);

 public:
  static constexpr int kSlotBits = 12;
  static constexpr int64_t kSlots = int64_t{1} << kSlotBits;

  // `start`: the wheel's notion of "now" until the first DrainDue/PopDue.
  explicit TimerWheel(TimePoint start, Duration tick = std::chrono::seconds(1))
      : tick_ms_(tick.count()) {
    HIKYAKU_CHECK(tick_ms_ > 0);
    current_ = FloorDiv(ToUnixMillis(start), tick_ms_);
  }
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  void Insert(TimePoint due, T value) {
    const int64_t tick = -FloorDiv(-ToUnixMillis(due), tick_ms_);  // ceil: never early
    const uint32_t n = Allocate();
    Node& node = At(n);
    node.value = std::move(value);
    node.tick = tick;
    Place(n);
    ++size_;
  }

  // Takes up to `max_count` due entries (due <= now, see above), oldest tick
  // first, calling `sink(T&&)` for each. Returns how many were taken.
  template <typename Sink>
  size_t DrainDue(TimePoint now, size_t max_count, Sink&& sink) {
    Advance(FloorDiv(ToUnixMillis(now), tick_ms_));
    size_t taken = 0;
    while (taken < max_count && ready_.head != kNil) {
      const uint32_t n = ready_.head;
      Node& node = At(n);
      ready_.head = node.next;
      if (ready_.head == kNil) ready_.tail = kNil;
      --ready_count_;
      --size_;
      T value = std::move(node.value);
      Free(n);
      ++taken;
      sink(std::move(value));
    }
    if (size_ == 0) ReleasePool();
    return taken;
  }

  std::vector<T> PopDue(TimePoint now, size_t max_count) {
    std::vector<T> out;
    DrainDue(now, max_count, [&out](T&& v) { out.push_back(std::move(v)); });
    return out;
  }

  // When the caller should next call DrainDue: a time at or before the
  // earliest pending due time (exact for the next ~68 minutes, the start of
  // a level-1 block beyond), or the current tick if entries are already
  // ready. nullopt when empty.
  std::optional<TimePoint> NextDue() const {
    if (size_ == 0) return std::nullopt;
    if (ready_count_ > 0) return TickTime(current_);
    // The earliest of: the first occupied level-0 slot, the next cascade of
    // an occupied level-1 slot, the next overflow re-examination. A level-1
    // entry may fire before a level-0 one (it went to level 1 because it was
    // inserted earlier, when it was further away), and cascade points are
    // never after the entries they cascade, so the minimum is never late.
    int64_t wake = INT64_MAX;
    if (level0_count_ > 0) {
      wake = current_ + 1 + FirstSetFrom(level0_bits_, (current_ + 1) & kMask);
    }
    const int64_t block = current_ >> kSlotBits;
    if (level1_count_ > 0) {
      const int64_t offset = FirstSetFrom(level1_bits_, (block + 1) & kMask);
      wake = std::min(wake, (block + 1 + offset) << kSlotBits);
    }
    if (overflow_count_ > 0) {
      wake = std::min(wake, ((current_ >> (2 * kSlotBits)) + 1) << (2 * kSlotBits));
    }
    return TickTime(wake);
  }

  // Removes every entry (due or not) for which `pred(const T&)` is true,
  // calling `sink(T&&)` for each; the others keep their place and order.
  // O(entries + slots): a full scan, for rare operator actions ("bounce
  // what waits for this site"), not for the delivery path.
  template <typename Pred, typename Sink>
  size_t RemoveIf(Pred&& pred, Sink&& sink) {
    size_t removed = 0;
    auto filter = [&](List& list) {
      size_t n_removed = 0;
      List kept;
      for (uint32_t n = list.head; n != kNil;) {
        const uint32_t next = At(n).next;
        if (pred(std::as_const(At(n).value))) {
          T value = std::move(At(n).value);
          Free(n);
          ++n_removed;
          sink(std::move(value));
        } else {
          Append(kept, n);
        }
        n = next;
      }
      list = kept;
      return n_removed;
    };
    for (int64_t slot = 0; slot < kSlots; ++slot) {
      if (level0_[slot].head != kNil) {
        const size_t n = filter(level0_[slot]);
        level0_count_ -= n;
        removed += n;
        if (level0_[slot].head == kNil) ClearBit(level0_bits_, slot);
      }
      if (level1_[slot].head != kNil) {
        const size_t n = filter(level1_[slot]);
        level1_count_ -= n;
        removed += n;
        if (level1_[slot].head == kNil) ClearBit(level1_bits_, slot);
      }
    }
    {
      const size_t n = filter(overflow_);
      overflow_count_ -= n;
      removed += n;
    }
    {
      const size_t n = filter(ready_);
      ready_count_ -= n;
      removed += n;
    }
    size_ -= removed;
    if (size_ == 0) ReleasePool();
    return removed;
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Entries already due (as of the last DrainDue) but not yet taken.
  size_t ready() const { return ready_count_; }
  Duration tick() const { return Duration(tick_ms_); }

 private:
  static constexpr uint32_t kNil = UINT32_MAX;
  static constexpr int64_t kMask = kSlots - 1;
  static constexpr size_t kChunkBits = 12;
  static constexpr size_t kChunkSize = size_t{1} << kChunkBits;

  struct Node {
    T value;
    int64_t tick = 0;  // the tick at which the entry fires
    uint32_t next = kNil;
  };
  struct List {
    uint32_t head = kNil;
    uint32_t tail = kNil;
  };
  using Bits = std::array<uint64_t, kSlots / 64>;

  static int64_t FloorDiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
  }
  TimePoint TickTime(int64_t tick) const { return FromUnixMillis(tick * tick_ms_); }

  Node& At(uint32_t n) { return chunks_[n >> kChunkBits][n & (kChunkSize - 1)]; }

  uint32_t Allocate() {
    if (free_ != kNil) {
      const uint32_t n = free_;
      free_ = At(n).next;
      At(n).next = kNil;
      return n;
    }
    if (used_ == chunks_.size() * kChunkSize) {
      HIKYAKU_CHECK(used_ + kChunkSize < kNil);
      chunks_.push_back(std::make_unique<Node[]>(kChunkSize));
    }
    return static_cast<uint32_t>(used_++);
  }
  void Free(uint32_t n) {
    At(n).next = free_;
    free_ = n;
  }
  // An empty wheel gives back all but one chunk, so a burst of a million
  // retries does not pin ~48 MB for the life of the process.
  void ReleasePool() {
    if (chunks_.size() <= 1 && used_ == 0) return;
    if (chunks_.size() > 1) chunks_.resize(1);
    free_ = kNil;
    used_ = 0;
  }

  void Append(List& list, uint32_t n) {
    At(n).next = kNil;
    if (list.tail == kNil) {
      list.head = n;
    } else {
      At(list.tail).next = n;
    }
    list.tail = n;
  }
  void AppendList(List& to, const List& from) {
    if (from.head == kNil) return;
    if (to.tail == kNil) {
      to.head = from.head;
    } else {
      At(to.tail).next = from.head;
    }
    to.tail = from.tail;
  }
  static void SetBit(Bits& bits, int64_t slot) { bits[slot >> 6] |= uint64_t{1} << (slot & 63); }
  static void ClearBit(Bits& bits, int64_t slot) {
    bits[slot >> 6] &= ~(uint64_t{1} << (slot & 63));
  }
  // Distance from `start` to the first set bit, searching cyclically. At
  // least one bit must be set.
  static int64_t FirstSetFrom(const Bits& bits, int64_t start) {
    const size_t words = bits.size();
    size_t w = static_cast<size_t>(start >> 6);
    uint64_t word = bits[w] & (~uint64_t{0} << (start & 63));
    for (size_t i = 0; i <= words; ++i) {
      if (word != 0) {
        const int64_t slot = static_cast<int64_t>(w * 64) + std::countr_zero(word);
        return (slot - start + kSlots) & kMask;
      }
      w = (w + 1) % words;
      word = bits[w];
    }
    HIKYAKU_CHECK(false);
    return 0;
  }

  // Puts node n where its tick belongs relative to current_ (see the
  // header comment for why each level's slots never mix ticks or blocks).
  void Place(uint32_t n) {
    const int64_t tick = At(n).tick;
    if (tick <= current_) {
      Append(ready_, n);
      ++ready_count_;
    } else if (tick - current_ < kSlots) {
      const int64_t slot = tick & kMask;
      Append(level0_[slot], n);
      SetBit(level0_bits_, slot);
      ++level0_count_;
    } else if ((tick >> kSlotBits) - (current_ >> kSlotBits) < kSlots) {
      const int64_t slot = (tick >> kSlotBits) & kMask;
      Append(level1_[slot], n);
      SetBit(level1_bits_, slot);
      ++level1_count_;
    } else {
      Append(overflow_, n);
      ++overflow_count_;
    }
  }

  // Re-places every node of `list` (after current_ moved).
  void Replace(List list) {
    for (uint32_t n = list.head; n != kNil;) {
      const uint32_t next = At(n).next;
      Place(n);
      n = next;
    }
  }

  void Advance(int64_t target) {
    while (current_ < target) {
      if (level0_count_ == 0) {
        // Nothing fires before the next cascade point: jump there.
        const int shift = level1_count_ > 0 ? kSlotBits : 2 * kSlotBits;
        if (level1_count_ == 0 && overflow_count_ == 0) {
          current_ = target;
          break;
        }
        const int64_t next_boundary = ((current_ >> shift) + 1) << shift;
        if (next_boundary > target) {
          current_ = target;
          break;
        }
        current_ = next_boundary - 1;
      }
      ++current_;
      if ((current_ & kMask) == 0) {
        const int64_t block = current_ >> kSlotBits;
        if ((block & kMask) == 0) {
          const List far = std::exchange(overflow_, List{});
          overflow_count_ = 0;
          Replace(far);
        }
        const int64_t slot = block & kMask;
        if (level1_[slot].head != kNil) {
          const List cascade = std::exchange(level1_[slot], List{});
          ClearBit(level1_bits_, slot);
          for (uint32_t n = cascade.head; n != kNil; n = At(n).next) --level1_count_;
          Replace(cascade);
        }
      }
      const int64_t slot = current_ & kMask;
      if (level0_[slot].head != kNil) {
        size_t moved = 0;
        for (uint32_t n = level0_[slot].head; n != kNil; n = At(n).next) ++moved;
        AppendList(ready_, level0_[slot]);
        level0_[slot] = List{};
        ClearBit(level0_bits_, slot);
        level0_count_ -= moved;
        ready_count_ += moved;
      }
    }
  }

  int64_t tick_ms_;
  int64_t current_;  // every entry with tick <= current_ is in ready_
  std::array<List, kSlots> level0_{};
  std::array<List, kSlots> level1_{};
  Bits level0_bits_{};
  Bits level1_bits_{};
  List overflow_;
  List ready_;
  size_t level0_count_ = 0;
  size_t level1_count_ = 0;
  size_t overflow_count_ = 0;
  size_t ready_count_ = 0;
  size_t size_ = 0;
  std::vector<std::unique_ptr<Node[]>> chunks_;
  size_t used_ = 0;  // nodes ever handed out from the chunks (free list aside)
  uint32_t free_ = kNil;
};

}  // namespace hikyaku::queue
