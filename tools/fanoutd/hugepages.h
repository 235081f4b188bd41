// fanoutd's heap on transparent huge pages (hugepages.cc).
//
// Every accepted event is one heap block (engine/worker.h). While ingest accepts faster than the
// receivers answer, the backlog grows and each new block is fresh memory: on 4 KiB pages that is
// about a page fault per event, a third of the HTTP loop's time in the ingest benchmark
// (bench/README.md, fanoutd). glibc backs its heap with transparent huge pages when its tunable
// glibc.malloc.hugetlb=1 is set, and reads tunables at start only: so `fanoutd serve` runs itself
// again, once, with the tunable added to GLIBC_TUNABLES (same process id, same descriptors).
#pragma once

namespace fanout::daemon {

// Re-executes this program with glibc.malloc.hugetlb=1 added to GLIBC_TUNABLES and returns only
// when it does not: GLIBC_TUNABLES already names glibc.malloc.hugetlb (the operator's choice,
// and how the second run knows it is the second), FANOUT_MALLOC_HUGETLB=0, the program runs
// under valgrind (LD_PRELOAD names its preload: the new image would leave the tool), the kernel
// has transparent huge pages off, or exec fails (then nothing changes).
void reexec_with_huge_pages(char** argv) noexcept;

}  // namespace fanout::daemon
