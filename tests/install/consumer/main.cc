// A program outside the source tree that uses the installed libdynamo.
#include <cstdio>

#include "dynamo/version.h"

int main() {
  dynamo::Version a = dynamo::NewVersion(dynamo::Dot{1, 1, 1}, {}, "a", false, 10);
  dynamo::Version b = dynamo::NewVersion(dynamo::Dot{2, 1, 2}, {}, "b", false, 10);
  dynamo::SiblingSet s = dynamo::Reconcile({a, b});
  if (s.size() != 2) return 1;
  std::printf("consumer ok: %zu siblings, token %s\n", s.size(),
              dynamo::TokenToString(dynamo::KeyToken("cart")).c_str());
  return 0;
}
