#pragma once

// The one intrusive list of fanout: circular, doubly linked, with a sentinel in the list object
// (h2o's linklist.h, libuv's queue.h). An element carries its links by deriving from
// ListNode<Self>; to be in two lists at once it derives from ListNode<Self, TagA> and
// ListNode<Self, TagB>, and each IntrusiveList names the tag it uses.
//
//   struct Job : ListNode<Job> { ... };
//   IntrusiveList<Job> waiting;
//   waiting.push_back(&job);      // O(1), no allocation
//   IntrusiveList<Job>::erase(&job);  // O(1), without knowing which list holds it
//
// Every operation is O(1) except iteration; nothing allocates, nothing is virtual. The list
// never owns its elements: destroying a list forgets what it holds, and an element must be
// unlinked (erase) before it is destroyed or linked elsewhere, unless the list holding it is
// reset() or destroyed first. A ListNode that is copied starts unlinked. A list object is
// neither copyable nor movable (its elements point at its sentinel).
//
// Threading: none; a list and its elements belong to one thread (one loop).

#include <cassert>
#include <cstddef>
#include <iterator>

namespace fanout::transport {

template <class T, class Tag>
class IntrusiveList;

template <class T, class Tag = void>
class ListNode {
 public:
  ListNode() noexcept = default;
  ListNode(const ListNode&) noexcept {}
  ListNode& operator=(const ListNode&) noexcept { return *this; }
  ~ListNode() = default;

  // In a list (any list of this tag).
  [[nodiscard]] bool linked() const noexcept { return next_ != nullptr; }

 private:
  friend class IntrusiveList<T, Tag>;
  ListNode* prev_ = nullptr;
  ListNode* next_ = nullptr;
};

template <class T, class Tag = void>
class IntrusiveList {
  using Node = ListNode<T, Tag>;

 public:
  IntrusiveList() noexcept { head_.prev_ = head_.next_ = &head_; }
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;
  ~IntrusiveList() = default;

  [[nodiscard]] bool empty() const noexcept { return head_.next_ == &head_; }
  // The first and last elements, nullptr when empty.
  [[nodiscard]] T* front() const noexcept { return element(head_.next_); }
  [[nodiscard]] T* back() const noexcept { return element(head_.prev_); }
  // The element after (before) `x` in this list, nullptr at the end. `x` must be in this list.
  [[nodiscard]] T* next(const T* x) const noexcept { return element(node(x)->next_); }
  [[nodiscard]] T* prev(const T* x) const noexcept { return element(node(x)->prev_); }

  // `x` must not be linked (in this list or any other of the same tag).
  void push_back(T* x) noexcept { link_before(&head_, node(x)); }
  void push_front(T* x) noexcept { link_before(head_.next_, node(x)); }
  // Unlinks `x` from the list holding it; `x` must be linked.
  static void erase(T* x) noexcept {
    Node* n = node(x);
    assert(n->linked() && "IntrusiveList::erase of an unlinked element");
    n->prev_->next_ = n->next_;
    n->next_->prev_ = n->prev_;
    n->prev_ = n->next_ = nullptr;
  }
  // Unlinks and returns the first element, nullptr when empty.
  T* pop_front() noexcept {
    T* x = front();
    if (x != nullptr) erase(x);
    return x;
  }
  // Moves every element of `other` to the end of this list, in order. O(1).
  void splice_back(IntrusiveList& other) noexcept {
    if (other.empty()) return;
    Node* first = other.head_.next_;
    Node* last = other.head_.prev_;
    other.head_.prev_ = other.head_.next_ = &other.head_;
    first->prev_ = head_.prev_;
    head_.prev_->next_ = first;
    last->next_ = &head_;
    head_.prev_ = last;
  }
  // Empties the list without touching its elements: for elements being freed with it, whose
  // links are never read again. O(1).
  void reset() noexcept { head_.prev_ = head_.next_ = &head_; }

  // Forward iteration. Unlinking the element an iterator is at invalidates that iterator; to
  // unlink while walking, take next() first.
  class iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = T*;
    using reference = T&;

    iterator() noexcept = default;
    reference operator*() const noexcept { return static_cast<T&>(*n_); }
    pointer operator->() const noexcept { return &static_cast<T&>(*n_); }
    iterator& operator++() noexcept {
      n_ = n_->next_;
      return *this;
    }
    iterator operator++(int) noexcept {
      iterator old = *this;
      n_ = n_->next_;
      return old;
    }
    friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.n_ == b.n_; }

   private:
    friend class IntrusiveList;
    explicit iterator(Node* n) noexcept : n_(n) {}
    Node* n_ = nullptr;
  };
  [[nodiscard]] iterator begin() const noexcept { return iterator(head_.next_); }
  [[nodiscard]] iterator end() const noexcept { return iterator(const_cast<Node*>(&head_)); }

 private:
  // Reference casts: a pointer cast to a base at a non-zero offset would add a null check.
  static Node* node(const T* x) noexcept {
    return &const_cast<Node&>(static_cast<const Node&>(*x));
  }
  [[nodiscard]] T* element(Node* n) const noexcept {
    return n == &head_ ? nullptr : &static_cast<T&>(*n);
  }
  static void link_before(Node* at, Node* n) noexcept {
    assert(!n->linked() && "IntrusiveList: linking an element that is already linked");
    n->prev_ = at->prev_;
    n->next_ = at;
    at->prev_->next_ = n;
    at->prev_ = n;
  }

  Node head_;
};

}  // namespace fanout::transport
