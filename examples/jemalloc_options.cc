// jemalloc's options for dynamo-server, linked only when the server links
// jemalloc (DYNAMO_SERVER_JEMALLOC). jemalloc reads this symbol once, before
// main; the MALLOC_CONF environment variable, read after it, overrides any
// option (MALLOC_CONF=thp:default turns huge pages back off).
//
// thp:always asks the kernel for transparent huge pages on jemalloc's heap
// (most kernels give them only where asked, "madvise"). A busy node's
// requests touch its storage entries, Merkle trees and ring tables at
// random, and with three nodes sharing a core each of those misses also
// missed the TLB: on the 3-node benchmark, CPU per request fell 4-11% in
// three interleaved comparisons, though bench/redis_benchmark.sh's noise
// hides it (status.md, tcp-server). The cost is memory held in 2 MiB steps
// (an idle node: 12 -> 17 MiB resident).
extern "C" {
// The type jemalloc declares; const data, never written.
const char* malloc_conf = "thp:always,metadata_thp:auto";
}
