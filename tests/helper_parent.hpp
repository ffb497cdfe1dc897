// Runs this test binary again as a "helper parent" (its main sees `env_assignment`, e.g.
// "PARX_TEST_PARENT_MODE=1"), with stdout piped back, so a test can kill that parent and check
// what it leaves behind. The calling process has threads: between fork and exec only
// async-signal-safe calls, so the environment is built before forking.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

namespace parx_test {

struct HelperParent {
  pid_t pid = -1;
  FILE* out = nullptr;  // the helper's stdout
};

inline HelperParent spawn_helper_parent(const char* env_assignment) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return {};
  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e)
    env_store.emplace_back(*e);
  env_store.emplace_back(env_assignment);
  std::vector<char*> envp;
  for (auto& e : env_store)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  char arg0[] = "helper-parent";
  char* argv[] = {arg0, nullptr};
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(pipefd[1], 1);
    execve("/proc/self/exe", argv, envp.data());
    _exit(127);
  }
  close(pipefd[1]);
  return {pid, fdopen(pipefd[0], "r")};
}

}  // namespace parx_test
