// The one way libdynamo includes asio (standalone, header-only). Every
// translation unit must see the same asio configuration, or asio's inline
// functions differ between them (an ODR violation). One real case: asio
// decides between aligned_alloc/free and operator new/delete for handler
// memory by looking at _GLIBCXX_HAVE_ALIGNED_ALLOC, which is defined only if
// a libstdc++ header came first; a file including <asio.hpp> first then frees
// with operator delete what another allocated with aligned_alloc
// (AddressSanitizer: alloc-dealloc-mismatch). So: fix the macros here, and
// include a standard header before asio.
#ifndef DYNAMO_TCP_ASIO_CONFIG_H_
#define DYNAMO_TCP_ASIO_CONFIG_H_

#ifndef ASIO_STANDALONE
#define ASIO_STANDALONE
#endif
#ifndef ASIO_NO_DEPRECATED
#define ASIO_NO_DEPRECATED
#endif
#ifndef ASIO_DISABLE_STD_ALIGNED_ALLOC
#define ASIO_DISABLE_STD_ALIGNED_ALLOC
#endif

#include <cstddef>  // libstdc++'s configuration, before asio reads it

#include <asio.hpp>

#endif  // DYNAMO_TCP_ASIO_CONFIG_H_
