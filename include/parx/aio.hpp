// parx/aio.hpp — parx::aio, asyncio for C++20 on Asio: tasks and the loop (aio/task.hpp),
// Queue, Semaphore, Lock, Event (aio/sync.hpp), TCP streams (aio/net.hpp). Not part of
// parx.hpp: include it where you use it (it brings in Asio's headers).
#pragma once

#include "parx/aio/net.hpp"
#include "parx/aio/sync.hpp"
#include "parx/aio/task.hpp"
