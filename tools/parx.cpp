// parx — the command-line companion of the library.
//
//   parx run -n N [--hosts h1,h2:4] [--bind none|core|socket] [--dry-run] [--] program args...
//       Runs `program` as an MPI job of N ranks through mpiexec (Open MPI or MPICH), with the
//       flags a parx program needs: oversubscription when N exceeds the slots, leave to run as
//       root where Open MPI asks for it, no binding of a rank to one core by default (a parx rank
//       runs threads on all its cores), and the PARX_* environment forwarded to every host. The
//       program's exit status becomes parx's.
//   parx info
//       Prints this machine's cores and memory, the MPI implementation and version, and whether
//       the program runs under a launcher (run it as `parx run -n 2 -- parx info` to see ranks).
//   parx trace summary [--json] run.json
//       Summarises a timeline written with PARX_TRACE=run.json (docs/trace.md): per function,
//       worker and pool, then wall time, busy time and the critical path. A file that is
//       missing, cut short or not a trace exits 2 with a message that says which.
#include <sched.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <parx/errors.hpp>
#include <parx/init.hpp>
#include <parx/mpi.hpp>
#include <parx/observe/trace_summary.hpp>
#include <parx/version.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

struct Fail {
  std::string what;
  int code = 2;
};

// `name` found on PATH (or as given when it contains a slash); empty if not executable.
// The executable regular file `name` runs (a path, or found on PATH); "" if there is none.
std::string which(const std::string& name) {
  auto runnable = [](const std::string& p) {
    struct stat st {};
    return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(p.c_str(), X_OK) == 0;
  };
  if (name.empty()) return "";
  if (name.find('/') != std::string::npos) return runnable(name) ? name : "";
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    const std::string p = (dir.empty() ? "." : dir) + "/" + name;
    if (runnable(p)) return p;
  }
  return "";
}

// The first line mpiexec prints for --version ("mpiexec (OpenRTE) 4.1.4", "HYDRA build details:").
std::string capture(const std::string& cmd) {
  std::string out;
  if (FILE* f = popen(cmd.c_str(), "r")) {
    char buf[512];
    while (std::fgets(buf, sizeof buf, f))
      out += buf;
    pclose(f);
  }
  return out;
}

enum class Flavor { openmpi, mpich, unknown };

Flavor flavor_of(const std::string& mpiexec) {
  const std::string v = capture("'" + mpiexec + "' --version 2>&1");
  if (v.find("Open MPI") != std::string::npos || v.find("OpenRTE") != std::string::npos)
    return Flavor::openmpi;
  if (v.find("HYDRA") != std::string::npos || v.find("MPICH") != std::string::npos)
    return Flavor::mpich;
  return Flavor::unknown;
}

std::size_t cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return static_cast<std::size_t>(CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

std::string quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789-_./=:,+@%") == std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s)
    q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Limits of `parx run`: a host's slot count, and how far ranks may oversubscribe the slots (a
// test on a laptop may run many ranks per core; 100,000 ranks on 2 cores is a typo).
constexpr long kMaxSlotsPerHost = 1 << 16;
constexpr std::size_t kMaxRanksPerSlot = 64;

struct RunOptions {
  int ranks = 0;
  std::string hosts;
  std::string bind = "none";
  std::string mpiexec = "mpiexec";
  bool dry_run = false;
  std::vector<std::string> command;
};

// The mpiexec command line for `o` (throws Fail for bad options).
std::vector<std::string> run_command(const RunOptions& o, Flavor& flavor) {
  if (o.ranks < 1)
    throw Fail{"parx run: -n must be at least 1 (got " + std::to_string(o.ranks) + ")"};
  if (o.command.empty())
    throw Fail{"parx run: no program given (parx run -n N -- program args...)"};
  if (o.command[0].empty()) throw Fail{"parx run: the program name is empty"};
  const std::string mpiexec = which(o.mpiexec);
  if (mpiexec.empty())
    throw Fail{"parx run: " + o.mpiexec +
                   " not found; install an MPI launcher (Debian: apt-get install openmpi-bin)",
               127};
  if (which(o.command[0]).empty())
    throw Fail{"parx run: program " + o.command[0] + " not found or not executable", 127};
  flavor = flavor_of(mpiexec);
  // Slots: the local cores, or what --hosts lists (h or h:slots, one slot per bare name).
  std::size_t slots = cores();
  std::vector<std::string> hosts;
  if (!o.hosts.empty()) {
    slots = 0;
    std::stringstream ss(o.hosts);
    std::string h;
    while (std::getline(ss, h, ',')) {
      if (h.empty()) throw Fail{"parx run: empty host name in --hosts " + o.hosts};
      const auto colon = h.find(':');
      std::size_t n = 1;
      if (colon != std::string::npos) {
        char* end = nullptr;
        errno = 0;
        const long v = std::strtol(h.c_str() + colon + 1, &end, 10);
        if (colon == 0 || end == h.c_str() + colon + 1 || *end != '\0' || errno == ERANGE ||
            v < 1 || v > kMaxSlotsPerHost)
          throw Fail{"parx run: bad host entry '" + h +
                     "' in --hosts (name or name:slots, slots 1.." +
                     std::to_string(kMaxSlotsPerHost) + ")"};
        n = static_cast<std::size_t>(v);
      }
      slots += n;
      hosts.push_back(h);
    }
  }
  if (static_cast<std::size_t>(o.ranks) > slots * kMaxRanksPerSlot)
    throw Fail{"parx run: -n " + std::to_string(o.ranks) + " is more than " +
               std::to_string(kMaxRanksPerSlot) + " ranks for each of the " +
               std::to_string(slots) + " slots" +
               (o.hosts.empty() ? std::string(" (cores here); list hosts with --hosts")
                                : std::string(" that --hosts lists"))};
  const bool oversubscribe = static_cast<std::size_t>(o.ranks) > slots;
  std::vector<std::string> cmd{mpiexec, "-n", std::to_string(o.ranks)};
  if (flavor == Flavor::mpich) {
    if (!hosts.empty()) {
      std::string list;
      for (const auto& h : hosts)
        list += (list.empty() ? "" : ",") + h;
      cmd.insert(cmd.end(), {"-hosts", list});
    }
    if (o.bind != "none") cmd.insert(cmd.end(), {"-bind-to", o.bind});
    // Hydra passes the whole environment to every rank.
  } else {
    if (!hosts.empty()) {
      std::string list;
      for (const auto& h : hosts)
        list += (list.empty() ? "" : ",") + h;
      cmd.insert(cmd.end(), {"--host", list});
    }
    if (oversubscribe) cmd.push_back("--oversubscribe");
    if (geteuid() == 0) cmd.push_back("--allow-run-as-root");
    cmd.insert(cmd.end(), {"--bind-to", o.bind});
    // Ranks on other hosts see only what is forwarded: the PARX_* settings.
    for (char** e = environ; *e; ++e)
      if (std::strncmp(*e, "PARX_", 5) == 0) {
        const char* eq = std::strchr(*e, '=');
        if (eq) cmd.insert(cmd.end(), {"-x", std::string(*e, static_cast<std::size_t>(eq - *e))});
      }
  }
  cmd.insert(cmd.end(), o.command.begin(), o.command.end());
  return cmd;
}

int do_run(const RunOptions& o) {
  Flavor flavor = Flavor::unknown;
  const std::vector<std::string> cmd = run_command(o, flavor);
  if (o.dry_run) {
    for (std::size_t i = 0; i < cmd.size(); ++i)
      std::cout << (i ? " " : "") << quote(cmd[i]);
    std::cout << '\n';
    return 0;
  }
  std::vector<char*> argv;
  for (const auto& a : cmd)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::fflush(nullptr);
  execv(argv[0], argv.data());
  throw Fail{"parx run: cannot start " + cmd[0] + ": " + std::strerror(errno), 127};
}

std::string meminfo(const char* key) {
  std::ifstream f("/proc/meminfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) {
      std::istringstream ss(line.substr(std::strlen(key)));
      double kb = 0;
      ss >> kb;
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.1f GiB", kb / (1024.0 * 1024.0));
      return buf;
    }
  return "unknown";
}

int do_info() {
  std::cout << "parx " << PARX_VERSION_STRING << '\n';
  std::cout << "host: " << parx::mpi::host_name() << '\n';
  std::cout << "cores: " << cores() << " usable (" << std::thread::hardware_concurrency()
            << " online)\n";
  std::cout << "memory: " << meminfo("MemTotal:") << " total, " << meminfo("MemAvailable:")
            << " available\n";
  std::string lib = parx::mpi::library_version();
  lib = lib.substr(0, lib.find_first_of(",\n"));
  std::cout << "MPI: " << lib << '\n';
  const std::string mpiexec = which("mpiexec");
  std::cout << "mpiexec: " << (mpiexec.empty() ? "not found" : mpiexec) << '\n';
  if (parx::mpi::launched()) {
    std::cout << "launcher: yes, rank " << parx::mpi::rank() << " of " << parx::mpi::size()
              << " (MPI thread level "
              << (parx::mpi::thread_level() == MPI_THREAD_MULTIPLE ? "MULTIPLE" : "below MULTIPLE")
              << ")\n";
  } else {
    std::cout << "launcher: none (a parx program uses this machine only; parx run -n N to start "
                 "an MPI job)\n";
  }
  return 0;
}

int do_trace_summary(const std::string& file, bool as_json, std::uint64_t max_mb) {
  parx::observe::TraceSummary s;
  try {
    parx::observe::TraceSummaryOptions o;
    o.max_file_bytes = max_mb << 20;
    s = parx::observe::summarize_trace_file(file, o);
  } catch (const parx::InvalidArgument& e) {
    std::string what = e.what();
    const std::string prefix = "parx::InvalidArgument: ";
    if (what.rfind(prefix, 0) == 0) what.erase(0, prefix.size());
    throw Fail{"parx trace summary: " + what, 2};
  }
  std::cout << (as_json ? parx::observe::trace_summary_json(s)
                        : parx::observe::format_trace_summary(s));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"parx: run parx programs as MPI jobs, inspect the machine, read traces"};
  app.require_subcommand(1);
  app.set_version_flag("--version", PARX_VERSION_STRING);

  RunOptions run;
  CLI::App* run_cmd = app.add_subcommand("run", "run a program as an MPI job of N ranks");
  run_cmd->add_option("-n,--np", run.ranks, "number of ranks (default: the cores here)");
  run_cmd->add_option("--hosts", run.hosts, "hosts to run on: h1,h2 or h1:slots,h2:slots");
  run_cmd->add_option("--bind", run.bind, "bind each rank to: none (default), core or socket")
      ->check(CLI::IsMember({"none", "core", "socket"}));
  run_cmd->add_option("--mpiexec", run.mpiexec, "the launcher to use (default: mpiexec)");
  run_cmd->add_flag("--dry-run", run.dry_run, "print the mpiexec command instead of running it");
  // Everything from the program's name on belongs to the program (its own options too).
  run_cmd->prefix_command();
  run_cmd->allow_extras();
  run_cmd->footer(
      "  program args...   the program to run and its arguments (after -- or the options)");

  CLI::App* info_cmd = app.add_subcommand("info", "cores, memory, MPI, launcher");

  std::string trace_file;
  bool trace_json = false;
  CLI::App* trace_cmd = app.add_subcommand("trace", "read timelines recorded with PARX_TRACE");
  trace_cmd->require_subcommand(1);
  CLI::App* summary_cmd = trace_cmd->add_subcommand(
      "summary", "where the time went: functions, workers, pools, critical path");
  summary_cmd->add_option("file", trace_file, "the trace (Chrome-trace JSON)")->required();
  summary_cmd->add_flag("--json", trace_json, "print the summary as JSON, for scripts");
  std::uint64_t trace_max_mb = 1024;
  summary_cmd
      ->add_option("--max-size-mb", trace_max_mb,
                   "refuse a trace file larger than this many MiB (default 1024)")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 24));

  // `parx run [options] -- program args...`: what follows `--` is the program's, untouched.
  std::vector<std::string> after_dashes;
  bool dashes = false;
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--") == 0) {
      dashes = true;
      after_dashes.assign(argv + i + 1, argv + argc);
      argc = i;
      break;
    }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (*run_cmd) {
      run.command = run_cmd->remaining();
      if (dashes) {  // after the program's name, `--` and what follows are its arguments
        if (!run.command.empty()) run.command.push_back("--");
        run.command.insert(run.command.end(), after_dashes.begin(), after_dashes.end());
      }
      if (run.ranks == 0 && run_cmd->count("-n") == 0) run.ranks = static_cast<int>(cores());
      return do_run(run);
    }
    if (*info_cmd) {
      parx::init(argc, argv);
      return do_info();
    }
    if (*summary_cmd) return do_trace_summary(trace_file, trace_json, trace_max_mb);
  } catch (const Fail& f) {
    std::cerr << f.what << '\n';
    return f.code;
  } catch (const std::exception& e) {
    std::cerr << "parx: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
