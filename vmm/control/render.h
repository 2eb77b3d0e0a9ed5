// Human-readable forms of control replies (kvctl without --json).
#pragma once

#include <string>

#include "vmm/control/protocol.h"

namespace kv::control {

// An array of objects: an aligned table, one column per key (in order of first
// appearance); an object: "key: value" lines, an array of objects inside it as a titled
// table; a scalar as is; an empty object or array: nothing. Ends with a newline unless
// empty.
std::string render(const Json& v);

}  // namespace kv::control
