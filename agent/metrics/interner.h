// Values interned to compact ids and counted by their holders: a value is
// stored once while anything holds it, and freed when its last holder goes.
#pragma once

#include <cassert>
#include <cstdint>
#include <functional>
#include <map>
#include <utility>
#include <vector>

namespace podtap {

// Not thread-safe: values, holders and ids are used under the caller's one lock.
//
// An id is a storage slot (low 32 bits) and the slot's generation (high 32
// bits). A freed slot is reused by the next new value under the next
// generation, so an id kept past its value's release never names another
// value: Live() is false for it and Get() must not be asked.
template <typename T, typename Less = std::less<T>>
class Interner {
 public:
  using Id = uint64_t;

  // One holder of an interned value: copies hold it too, and the value is
  // freed when the last holder is destroyed. The interner must outlive its
  // refs. A default Ref holds nothing.
  class Ref {
   public:
    Ref() = default;
    Ref(const Ref& o) : owner_(o.owner_), id_(o.id_) {
      if (owner_ != nullptr) owner_->Acquire(id_);
    }
    Ref(Ref&& o) noexcept : owner_(std::exchange(o.owner_, nullptr)), id_(o.id_) {}
    Ref& operator=(Ref o) noexcept {
      std::swap(owner_, o.owner_);
      std::swap(id_, o.id_);
      return *this;
    }
    ~Ref() {
      if (owner_ != nullptr) owner_->Release(id_);
    }
    // Meaningful only while held (a default Ref's id is 0).
    Id id() const { return id_; }
    bool held() const { return owner_ != nullptr; }

   private:
    friend class Interner;
    Ref(Interner* owner, Id id) : owner_(owner), id_(id) { owner_->Acquire(id_); }
    Interner* owner_ = nullptr;
    Id id_ = 0;
  };

  Interner() = default;
  Interner(const Interner&) = delete;
  Interner& operator=(const Interner&) = delete;

  // The value's id, adding the value when no one holds it now.
  Ref Intern(T value) {
    auto [it, inserted] = index_.try_emplace(std::move(value), Id{0});
    if (inserted) {
      uint32_t slot;
      if (free_.empty()) {
        slot = static_cast<uint32_t>(slots_.size());
        slots_.emplace_back();
      } else {
        slot = free_.back();
        free_.pop_back();
      }
      Slot& s = slots_[slot];
      s.value = it;
      s.used = true;
      it->second = MakeId(slot, s.generation);
    }
    return Ref(this, it->second);
  }
  // Another holder of a value held now.
  Ref Hold(Id id) {
    assert(Live(id));
    return Ref(this, id);
  }
  bool Live(Id id) const {
    const uint32_t slot = SlotOf(id);
    return slot < slots_.size() && slots_[slot].used &&
           slots_[slot].generation == static_cast<uint32_t>(id >> 32);
  }
  // The value of an id held now.
  const T& Get(Id id) const {
    assert(Live(id));
    return slots_[SlotOf(id)].value->first;
  }

  // One more or one less holder of a value held now, for holders that keep only its id (the
  // query recorder's EndpointsRef); Release frees it with the last.
  void Acquire(Id id) {
    assert(Live(id));
    slots_[SlotOf(id)].refs++;
  }
  void Release(Id id) {
    assert(Live(id));
    Slot& s = slots_[SlotOf(id)];
    if (--s.refs > 0) return;
    index_.erase(s.value);
    s.value = {};
    s.used = false;
    s.generation++;  // wraps after 2^32 reuses of one slot
    free_.push_back(SlotOf(id));
  }

  // Values held now.
  size_t size() const { return index_.size(); }
  // Slots ever used (held and free): SlotOf() of any id is below it, so an
  // array of this size can be indexed by slot.
  size_t slots() const { return slots_.size(); }
  static uint32_t SlotOf(Id id) { return static_cast<uint32_t>(id); }

 private:
  struct Slot {
    typename std::map<T, Id, Less>::iterator value{};
    uint32_t generation = 0;
    uint32_t refs = 0;
    bool used = false;
  };
  static Id MakeId(uint32_t slot, uint32_t generation) {
    return (static_cast<Id>(generation) << 32) | slot;
  }

  std::map<T, Id, Less> index_;  // holds each value once
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;
};

}  // namespace podtap
