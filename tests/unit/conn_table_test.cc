// The connection table's cap and identity rules.
#include "agent/conn/conn_table.h"

#include <gtest/gtest.h>

namespace podtap {
namespace {

TEST(ConnTable, RefusesPastItsCap) {
  ConnTable t(2);
  ASSERT_NE(t.Insert(1, Conn{}), nullptr);
  ASSERT_NE(t.Insert(2, Conn{}), nullptr);
  EXPECT_EQ(t.Insert(3, Conn{}), nullptr);
  EXPECT_EQ(t.size(), 2u);
  t.Erase(1);
  EXPECT_NE(t.Insert(3, Conn{}), nullptr);
}

TEST(ConnTable, SameIdReplacesEvenWhenFull) {
  ConnTable t(1);
  Conn a;
  a.base_acked = 1;
  ASSERT_NE(t.Insert(7, std::move(a)), nullptr);
  Conn b;
  b.base_acked = 9;
  Conn* c = t.Insert(7, std::move(b));
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->base_acked, 9u);
  EXPECT_EQ(t.size(), 1u);
}

TEST(ConnTable, FindAndErase) {
  ConnTable t(4);
  t.Insert(5, Conn{});
  EXPECT_NE(t.Find(5), nullptr);
  EXPECT_EQ(t.Find(6), nullptr);
  t.Erase(5);
  EXPECT_EQ(t.Find(5), nullptr);
}

}  // namespace
}  // namespace podtap
