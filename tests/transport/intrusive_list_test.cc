// IntrusiveList (transport/intrusive_list.h): order, O(1) unlinking from anywhere, two lists on
// one element through tags, splicing, reset, and a random walk against std::list.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <list>
#include <random>
#include <vector>

#include "transport/intrusive_list.h"

namespace fanout::transport {
namespace {

struct Second;

struct Item : ListNode<Item>, ListNode<Item, Second> {
  explicit Item(int v) : value(v) {}
  int value;
};

using List = IntrusiveList<Item>;
using SecondList = IntrusiveList<Item, Second>;

template <class L>
std::vector<int> values(const L& list) {
  std::vector<int> out;
  for (const Item& i : list) out.push_back(i.value);
  return out;
}

template <class L>
std::vector<int> values_backwards(const L& list) {
  std::vector<int> out;
  for (Item* i = list.back(); i != nullptr; i = list.prev(i)) out.push_back(i->value);
  return out;
}

bool linked(const Item& i) {
  return static_cast<const ListNode<Item>&>(i).linked();
}

TEST(IntrusiveListTest, EmptyList) {
  List list;
  EXPECT_TRUE(list.empty());
  EXPECT_EQ(list.front(), nullptr);
  EXPECT_EQ(list.back(), nullptr);
  EXPECT_EQ(list.pop_front(), nullptr);
  EXPECT_TRUE(list.begin() == list.end());
}

TEST(IntrusiveListTest, PushBackAndFrontKeepOrder) {
  Item a(1), b(2), c(3), d(4);
  List list;
  list.push_back(&b);
  list.push_back(&c);
  list.push_front(&a);
  list.push_back(&d);
  EXPECT_FALSE(list.empty());
  EXPECT_EQ(list.front(), &a);
  EXPECT_EQ(list.back(), &d);
  EXPECT_EQ(values(list), (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(values_backwards(list), (std::vector<int>{4, 3, 2, 1}));
  EXPECT_EQ(list.next(&d), nullptr);
  EXPECT_EQ(list.prev(&a), nullptr);
  list.reset();
}

TEST(IntrusiveListTest, EraseFromAnyPositionWithoutTheList) {
  Item a(1), b(2), c(3);
  List list;
  for (Item* i : {&a, &b, &c}) list.push_back(i);
  EXPECT_TRUE(linked(b));
  List::erase(&b);  // middle
  EXPECT_FALSE(linked(b));
  EXPECT_EQ(values(list), (std::vector<int>{1, 3}));
  List::erase(&c);  // last
  EXPECT_EQ(list.back(), &a);
  List::erase(&a);  // only
  EXPECT_TRUE(list.empty());
  // An unlinked element can go into a list again.
  list.push_front(&b);
  EXPECT_EQ(list.pop_front(), &b);
  EXPECT_FALSE(linked(b));
  EXPECT_TRUE(list.empty());
}

TEST(IntrusiveListTest, TagsGiveAnElementTwoIndependentLists) {
  Item a(1), b(2), c(3);
  List first;
  SecondList second;
  for (Item* i : {&a, &b, &c}) first.push_back(i);
  for (Item* i : {&c, &a}) second.push_back(i);
  List::erase(&a);
  EXPECT_EQ(values(first), (std::vector<int>{2, 3}));
  EXPECT_EQ(values(second), (std::vector<int>{3, 1}));
  SecondList::erase(&c);
  EXPECT_EQ(values(first), (std::vector<int>{2, 3}));
  EXPECT_EQ(values(second), (std::vector<int>{1}));
  first.reset();
  second.reset();
}

TEST(IntrusiveListTest, SpliceBackMovesEverythingInOrder) {
  Item a(1), b(2), c(3), d(4);
  List to, from;
  to.push_back(&a);
  from.push_back(&b);
  from.push_back(&c);
  to.splice_back(from);
  EXPECT_TRUE(from.empty());
  EXPECT_EQ(values(to), (std::vector<int>{1, 2, 3}));
  to.splice_back(from);  // empty: nothing
  EXPECT_EQ(values(to), (std::vector<int>{1, 2, 3}));
  List other;
  other.splice_back(to);  // into an empty list
  EXPECT_EQ(values(other), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(values_backwards(other), (std::vector<int>{3, 2, 1}));
  from.push_back(&d);  // the emptied list works again
  EXPECT_EQ(values(from), (std::vector<int>{4}));
  other.reset();
  from.reset();
}

TEST(IntrusiveListTest, ResetForgetsWithoutTouchingElements) {
  Item a(1), b(2);
  List list;
  list.push_back(&a);
  list.push_back(&b);
  list.reset();
  EXPECT_TRUE(list.empty());
  EXPECT_EQ(list.front(), nullptr);
}

TEST(IntrusiveListTest, CopiesStartUnlinked) {
  Item a(1);
  List list;
  list.push_back(&a);
  Item copy = a;
  EXPECT_FALSE(linked(copy));
  EXPECT_TRUE(linked(a));
  copy = a;
  EXPECT_FALSE(linked(copy));
  List::erase(&a);
}

TEST(IntrusiveListTest, UnlinkWhileWalkingWithNext) {
  std::vector<Item> items;
  items.reserve(10);
  for (int v = 0; v < 10; ++v) items.emplace_back(v);
  List list;
  for (Item& i : items) list.push_back(&i);
  for (Item* i = list.front(); i != nullptr;) {
    Item* next = list.next(i);
    if (i->value % 2 == 0) List::erase(i);
    i = next;
  }
  EXPECT_EQ(values(list), (std::vector<int>{1, 3, 5, 7, 9}));
  while (list.pop_front() != nullptr) {
  }
}

TEST(IntrusiveListTest, RandomOperationsMatchStdList) {
  constexpr int kItems = 64;
  std::vector<Item> items;
  items.reserve(kItems);
  for (int v = 0; v < kItems; ++v) items.emplace_back(v);
  List list;
  std::list<int> model;
  std::mt19937 rng(15);
  for (int step = 0; step < 20000; ++step) {
    Item& item = items[rng() % kItems];
    const bool in_model = std::find(model.begin(), model.end(), item.value) != model.end();
    ASSERT_EQ(linked(item), in_model);
    switch (rng() % 4) {
      case 0:
        if (!in_model) {
          list.push_back(&item);
          model.push_back(item.value);
        }
        break;
      case 1:
        if (!in_model) {
          list.push_front(&item);
          model.push_front(item.value);
        }
        break;
      case 2:
        if (in_model) {
          List::erase(&item);
          model.remove(item.value);
        }
        break;
      default: {
        Item* first = list.pop_front();
        if (model.empty()) {
          ASSERT_EQ(first, nullptr);
        } else {
          ASSERT_NE(first, nullptr);
          ASSERT_EQ(first->value, model.front());
          model.pop_front();
        }
      }
    }
    ASSERT_EQ(values(list), std::vector<int>(model.begin(), model.end()));
  }
  list.reset();
}

}  // namespace
}  // namespace fanout::transport
