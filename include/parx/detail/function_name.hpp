// parx/detail/function_name.hpp — internal: readable names of functions and types, for labels
// and messages, without the registry's templates (remote.hpp) or the codec. Safe from any thread.
#pragma once

#include <string>

namespace parx::detail {

// A type's readable name from its typeid(T).name() ("std::vector<int>", not "St6vectorIiSaIiEE").
std::string demangle(const char* name);

// The name `fn` was registered under (valid for the program's life), or nullptr.
const char* registered_name(const void* fn) noexcept;

}  // namespace parx::detail
