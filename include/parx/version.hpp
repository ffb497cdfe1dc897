// parx/version.hpp — the library version, as numbers and a string.
#pragma once

#define PARX_VERSION_MAJOR 0
#define PARX_VERSION_MINOR 1
#define PARX_VERSION_PATCH 0
// major * 10000 + minor * 100 + patch
#define PARX_VERSION 100
#define PARX_VERSION_STRING "0.1.0"
