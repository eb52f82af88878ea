// Reference-counted interning: one copy per value, freed with its last
// holder, and ids that never name a later value.
#include "agent/metrics/interner.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace podtap {
namespace {

using Strings = Interner<std::string>;

TEST(Interner, OneIdPerValueWhileHeld) {
  Strings t;
  Strings::Ref a = t.Intern("a");
  Strings::Ref again = t.Intern("a");
  Strings::Ref b = t.Intern("b");
  EXPECT_EQ(a.id(), again.id());
  EXPECT_NE(a.id(), b.id());
  EXPECT_EQ(t.Get(a.id()), "a");
  EXPECT_EQ(t.Get(b.id()), "b");
  EXPECT_EQ(t.size(), 2u);
}

TEST(Interner, TheLastHolderFreesTheValue) {
  Strings t;
  Strings::Id id = 0;
  {
    Strings::Ref a = t.Intern("a");
    id = a.id();
    Strings::Ref copy = a;              // copies hold it
    Strings::Ref moved = std::move(a);  // a move hands over a's hold
    Strings::Ref other = t.Hold(id);    // and so does a hold by id
    EXPECT_FALSE(a.held());             // NOLINT(bugprone-use-after-move): asserting the move
    copy = Strings::Ref();              // let go of one by assignment
    other = std::move(moved);           // and of another by a move over it
    EXPECT_TRUE(t.Live(id));
    EXPECT_EQ(t.size(), 1u);
  }
  EXPECT_FALSE(t.Live(id));
  EXPECT_EQ(t.size(), 0u);
}

TEST(Interner, AReusedSlotNeverAnswersToAnOldId) {
  Strings t;
  Strings::Id old_id = t.Intern("pod-of-yesterday").id();  // freed at once
  EXPECT_EQ(t.size(), 0u);
  Strings::Ref now = t.Intern("pod-of-today");
  // Same storage, new generation: the old id names nothing.
  EXPECT_EQ(Strings::SlotOf(now.id()), Strings::SlotOf(old_id));
  EXPECT_NE(now.id(), old_id);
  EXPECT_FALSE(t.Live(old_id));
  EXPECT_TRUE(t.Live(now.id()));
  EXPECT_EQ(t.Get(now.id()), "pod-of-today");
  EXPECT_EQ(t.slots(), 1u);
  // Interning the old value again gives a new id too.
  Strings::Ref back = t.Intern("pod-of-yesterday");
  EXPECT_NE(back.id(), old_id);
  EXPECT_EQ(t.slots(), 2u);
}

TEST(Interner, StorageIsBoundedByWhatIsHeldAtOnce) {
  Strings t;
  for (int round = 0; round < 100; round++) {
    std::vector<Strings::Ref> held;
    for (int i = 0; i < 50; i++) held.push_back(t.Intern(std::to_string(round * 50 + i)));
    EXPECT_EQ(t.size(), 50u);
  }
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.slots(), 50u);
}

}  // namespace
}  // namespace podtap
