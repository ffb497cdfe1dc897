// parx/detail/map_stream.hpp — the lazy map engine behind imap, imap_unordered and map over
// non-random-access inputs. Written once against an executor's `submit`, so every executor that
// can run a chunk gets lazy, bounded, adaptive maps.
//
// The consuming thread drives everything: when it asks for the next result, the engine first
// tops up in-flight work by pulling input items (never more than max_in_flight not yet handed
// back), batching them into chunks whose size adapts to the measured per-item time; then it waits
// for the next chunk (in order, or in completion order). Each item's exception is kept with the
// item, so one failing item surfaces exactly at its position and the others are unaffected.
//
// An executor that cannot run an arbitrary closure (a process pool: only registered functions
// cross the boundary) provides `submit_chunk<R>(f, items, first_index)`, returning
// Future<ChunkResult<R>>; the engine uses it instead of submitting a lambda.
#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <ranges>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <string>
#include <typeinfo>

#include "parx/detail/function_name.hpp"
#include "parx/detail/progress.hpp"
#include "parx/errors.hpp"
#include "parx/executor.hpp"
#include "parx/when.hpp"

namespace parx::detail {

template <class T>
using unit_if_void = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class R>
struct ChunkResult {
  std::vector<std::optional<R>> values;                            // nullopt where the item threw
  std::vector<std::pair<std::size_t, std::exception_ptr>> errors;  // (offset in chunk, error)
  std::int64_t elapsed_ns = 0;
  // Dense form, used instead of `values` when not empty: item i's value is dense[i] (a
  // value-initialised R where the item threw).
  std::vector<R> dense;

  std::size_t size() const noexcept { return dense.empty() ? values.size() : dense.size(); }
  // By value: `dense` of bool is a std::vector<bool>, whose elements are proxies.
  R take(std::size_t i) {
    if (dense.empty()) return std::move(*values[i]);
    return std::move(dense[i]);
  }
  const R& peek(std::size_t i) const requires(!std::is_same_v<R, bool>) {
    if (dense.empty()) return *values[i];
    return dense[i];
  }
  bool peek(std::size_t i) const requires std::is_same_v<R, bool> {
    return dense.empty() ? *values[i] : static_cast<bool>(dense[i]);
  }
};

template <class T>
inline constexpr bool is_chunk_result_v = false;
template <class R>
inline constexpr bool is_chunk_result_v<ChunkResult<R>> = true;

// The name a map shows in progress reports: the registered name of a function, else "map".
template <class F>
std::string function_label(const F& f) {
  if constexpr (std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>) {
    const char* name = registered_name(reinterpret_cast<const void*>(f));
    return name ? name : std::string();
  } else if constexpr (requires { f.fn; }) {
    return function_label(f.fn);
  } else {
    return {};
  }
}

// Runs `f` over `items`, keeping each item's outcome.
template <class R, class F, class In>
ChunkResult<R> run_chunk(F& f, std::vector<In>& items) {
  ChunkResult<R> out;
  out.values.reserve(items.size());
  const std::int64_t t0 = now_ns();
  for (std::size_t i = 0; i < items.size(); ++i) {
    try {
      if constexpr (std::is_same_v<R, std::monostate> &&
                    std::is_void_v<std::invoke_result_t<F&, In&>>) {
        std::invoke(f, items[i]);
        out.values.emplace_back(std::monostate{});
      } else {
        out.values.emplace_back(std::invoke(f, items[i]));
      }
    } catch (...) {
      out.values.emplace_back(std::nullopt);
      out.errors.emplace_back(i, std::current_exception());
    }
  }
  out.elapsed_ns = now_ns() - t0;
  return out;
}

// The checkpoint journal of one map of In to R (MapOptions::checkpoint), seen from the map
// engine. The engine itself knows no codec: parx/checkpoint.hpp defines the journal, whose
// inputs and results the codec encodes.
template <class In, class R>
class MapCheckpoint {
 public:
  virtual ~MapCheckpoint() = default;
  // For items [first, first + n): each input's hash, and the recorded result of those that have
  // one (their input checked against it). Throws CheckpointError for a result that was recorded
  // for another input, or that does not decode.
  virtual void lookup(const std::vector<In>& items, std::size_t first,
                      std::vector<std::uint64_t>& hashes, std::vector<std::optional<R>>& found) = 0;
  // Appends a finished chunk's results (not its failed items); never throws.
  virtual void record(const ChunkResult<R>& cr, std::size_t first,
                      const std::vector<std::uint64_t>& hashes) noexcept = 0;
  // Syncs; returns why the journal stopped recording, empty if it did not.
  virtual std::string close() = 0;
};

// Which journal a map gets, chosen at each call of a pool's map (a template argument, so that
// files that see different choices make different functions): `journal_for<F>` finds, by
// argument-dependent lookup at the call, the `journal_policy` overload parx/checkpoint.hpp
// declares (CodecJournal) or this fallback, which refuses a checkpoint with an error saying what
// to include. A map never runs without the journal it was asked for.
struct NoJournal {
  template <class In, class R>
  static std::unique_ptr<MapCheckpoint<In, R>> open(const MapOptions&, const std::string&) {
    throw InvalidArgument(
        "checkpoint: this map of " + demangle(typeid(In).name()) + " to " +
        demangle(typeid(R).name()) +
        " was compiled without the checkpoint journal: #include <parx/checkpoint.hpp> (or "
        "<parx/parx.hpp>) before the map is called");
  }
};
template <class T>
struct JournalTag {};
NoJournal journal_policy(...);
template <class F>
using journal_for = decltype(journal_policy(JournalTag<F>{}));

template <class Ex, class View, class F, class J = NoJournal>
class MapStream {
 public:
  using In = std::ranges::range_value_t<View>;
  using R = unit_if_void<std::invoke_result_t<F&, In&>>;

  MapStream(Ex& ex, View view, std::shared_ptr<F> f, const MapOptions& opts,
            std::size_t default_target_us, std::size_t max_chunk)
      : ex_(ex),
        view_(std::move(view)),
        f_(std::move(f)),
        opts_(opts),
        chunk_(opts.chunksize ? opts.chunksize : 1),
        max_chunk_(static_cast<double>(max_chunk)),
        target_ns_(static_cast<std::int64_t>(opts.target_chunk_us ? opts.target_chunk_us
                                                                  : default_target_us) *
                   1000),
        t0_(now_ns()) {
    const std::string fn = function_label(*f_);
    name_ = opts_.label.empty() ? fn : opts_.label;
    if (!map_observed(opts_)) return;
    std::size_t total = 0;
    if constexpr (std::ranges::sized_range<View>)
      total = static_cast<std::size_t>(std::ranges::size(view_));
    monitor_ = MapMonitor::start(opts_, total, name_);
    if (!opts_.checkpoint.empty()) {
      journal_ = J::template open<In, R>(
          opts_, "fn=" + (fn.empty() ? std::string(typeid(F).name()) : fn) +
                     "; in=" + typeid(In).name() + "; out=" + typeid(R).name() +
                     "; n=" + (std::ranges::sized_range<View> ? std::to_string(total) : "unsized"));
    }
  }

  MapStream(const MapStream&) = delete;
  MapStream& operator=(const MapStream&) = delete;

  ~MapStream() {
    // Tasks not yet started are cancelled; running ones finish into states nobody reads (they own
    // their inputs and a reference to f).
    for (auto& c : ordered_)
      c.cancel();
    for (auto& [seq, c] : unordered_)
      c.cancel();
    write_stats();
    if (monitor_) monitor_->finish();
  }

  // The next result, std::nullopt at the end. Rethrows the item's exception at its position.
  std::optional<R> next() {
    for (;;) {
      if (cur_ && pos_ < cur_->size()) {
        const std::size_t i = pos_++;
        --in_flight_items_;
        ++yielded_;
        if (err_ < cur_->errors.size() && cur_->errors[err_].first == i)
          std::rethrow_exception(cur_->errors[err_++].second);
        return cur_->take(i);
      }
      cur_.reset();
      refill();
      if (ordered_.empty() && unordered_.empty()) {
        end_observed();
        return std::nullopt;
      }
      take_next_chunk();
    }
  }

  // Appends every remaining result to `out`, a chunk at a time. An item's exception is rethrown
  // at its position, after the results before it were appended.
  void drain_into(std::vector<R>& out) {
    for (;;) {
      if (cur_) {
        const std::size_t n = cur_->size();
        while (pos_ < n) {
          const std::size_t stop = err_ < cur_->errors.size() ? cur_->errors[err_].first : n;
          if (cur_->dense.empty()) {
            for (std::size_t i = pos_; i < stop; ++i)
              out.push_back(std::move(*cur_->values[i]));
          } else {
            out.insert(out.end(), std::make_move_iterator(cur_->dense.begin() + pos_),
                       std::make_move_iterator(cur_->dense.begin() + stop));
          }
          in_flight_items_ -= stop - pos_;
          yielded_ += stop - pos_;
          pos_ = stop;
          if (pos_ < n) {
            ++pos_;
            --in_flight_items_;
            ++yielded_;
            std::rethrow_exception(cur_->errors[err_++].second);
          }
        }
      }
      cur_.reset();
      refill();
      if (ordered_.empty() && unordered_.empty()) {
        end_observed();
        return;
      }
      take_next_chunk();
    }
  }

 private:
  using CR = ChunkResult<R>;
  struct InFlight {
    Future<CR> fut;
    std::size_t count;
    Future<CR> src = {};  // the executor's future when `fut` is the observed copy
    void cancel() {
      fut.cancel();
      if (src.valid()) src.cancel();
    }
  };

  // The map is complete: the last progress report, the journal synced.
  void end_observed() {
    if (monitor_) monitor_->finish();
    if (journal_) {
      auto j = std::move(journal_);
      checkpoint_error_ = j->close();
    }
  }

  // Interposes on a chunk's future: when it completes, progress is counted and results are
  // journaled (on the completing thread, before the consumer sees the chunk).
  Future<CR> observe_chunk(Future<CR>& fut, std::size_t first,
                           std::shared_ptr<std::vector<std::uint64_t>> hashes) {
    Ref<State<CR>> out(new State<CR>());
    Future<CR> outf = make_future<CR>(Ref<State<CR>>(out.get(), false));
    Ref<State<CR>> src(state_of(fut), false);
    State<CR>& s = *src;
    on_complete(s, [src = std::move(src), out = std::move(out), mon = monitor_, jr = journal_,
                    first, hashes = std::move(hashes)](StateBase&) mutable noexcept {
      const auto st = src->status();
      if (st == StateBase::kValue) {
        CR cr = src->take();
        if (mon) mon->ended(cr.size(), cr.errors.size());
        if (jr) jr->record(cr, first, *hashes);
        out->set_value(std::move(cr));
      } else if (st == StateBase::kError) {
        out->set_exception(src->exception());
      } else {
        out->set_exception(std::make_exception_ptr(Cancelled()));
      }
    });
    return outf;
  }

  // Results restored from the journal, as a ready chunk.
  static Future<CR> restored_chunk(std::vector<std::optional<R>> run) {
    CR cr;
    cr.values = std::move(run);
    return make_ready_future(std::move(cr));
  }

  std::size_t limit() const {
    if (opts_.max_in_flight) return std::max(opts_.max_in_flight, std::size_t{1});
    return 4 * std::max<std::size_t>(ex_.workers(), 1) * chunk_;
  }

  void refill() {
    if (!started_) {
      it_.emplace(std::ranges::begin(view_));
      started_ = true;
    }
    while (!exhausted_ && in_flight_items_ < limit()) {
      std::size_t want = std::min(chunk_, limit() - in_flight_items_);
      if constexpr (std::ranges::sized_range<View>) {
        // Split the tail: never take more than a share of what is left, so the last chunks are
        // small and no worker straggles with a big one while the others idle.
        if (!opts_.chunksize) {
          const std::size_t total = static_cast<std::size_t>(std::ranges::size(view_));
          const std::size_t left = total > pulled_ ? total - pulled_ : 0;
          const std::size_t share = (left + 2 * ex_.workers() - 1) / (2 * ex_.workers());
          want = std::min(want, std::max<std::size_t>(share, 1));
        }
      }
      std::vector<In> items;
      if constexpr (std::ranges::random_access_range<View> && std::ranges::sized_range<View> &&
                    std::is_default_constructible_v<In>) {
        const auto end = std::ranges::end(view_);
        const std::size_t take = std::min(want, static_cast<std::size_t>(end - *it_));
        items.resize(take);
        std::copy(*it_, *it_ + static_cast<std::ptrdiff_t>(take), items.begin());
        *it_ += static_cast<std::ptrdiff_t>(take);
        exhausted_ = *it_ == end;
      } else {
        items.reserve(want);
        while (items.size() < want) {
          if (*it_ == std::ranges::end(view_)) {
            exhausted_ = true;
            break;
          }
          items.push_back(**it_);
          ++*it_;
        }
      }
      if (items.empty()) break;
      const std::size_t first = pulled_;
      pulled_ += items.size();
      if (journal_) {
        submit_resuming(std::move(items), first);
      } else {
        submit_items(std::move(items), first, nullptr);
      }
    }
  }

  // With a journal: items already recorded come back from it, runs of the others are submitted.
  void submit_resuming(std::vector<In> items, std::size_t first) {
    const std::size_t n = items.size();
    std::vector<std::uint64_t> hashes(n);
    std::vector<std::optional<R>> found(n);
    journal_->lookup(items, first, hashes, found);
    std::size_t i = 0;
    while (i < n) {
      std::size_t j = i;
      const bool done = found[i].has_value();
      while (j < n && found[j].has_value() == done)
        ++j;
      if (done) {
        std::vector<std::optional<R>> run(std::make_move_iterator(found.begin() + i),
                                          std::make_move_iterator(found.begin() + j));
        push(restored_chunk(std::move(run)), j - i, {});
        resumed_ += j - i;
        if (monitor_) monitor_->resumed(j - i);
      } else {
        std::vector<In> part;
        if (i == 0 && j == n) {
          part = std::move(items);
        } else {
          part.reserve(j - i);
          for (std::size_t k = i; k < j; ++k)
            part.push_back(std::move(items[k]));
        }
        submit_items(
            std::move(part), first + i,
            std::make_shared<std::vector<std::uint64_t>>(hashes.begin() + i, hashes.begin() + j));
      }
      i = j;
    }
  }

  void submit_items(std::vector<In> items, std::size_t first,
                    std::shared_ptr<std::vector<std::uint64_t>> hashes) {
    const std::size_t count = items.size();
    Future<CR> fut;
    if constexpr (requires { ex_.template submit_chunk<R>(*f_, std::move(items), first); }) {
      fut = ex_.template submit_chunk<R>(*f_, std::move(items), first);
    } else if constexpr (requires { ex_.submit_named("", 1, [] { return 0; }); }) {
      fut = ex_.submit_named(
          name_.empty() ? nullptr : name_.c_str(), count,
          [f = f_, items = std::move(items)]() mutable { return run_chunk<R>(*f, items); });
    } else {
      fut = ex_.submit(
          [f = f_, items = std::move(items)]() mutable { return run_chunk<R>(*f, items); });
    }
    ++chunks_;
    if (monitor_ || journal_) {
      Future<CR> seen = observe_chunk(fut, first, std::move(hashes));
      push(std::move(seen), count, std::move(fut));
    } else {
      push(std::move(fut), count, {});
    }
  }

  void push(Future<CR> fut, std::size_t count, Future<CR> src) {
    in_flight_items_ += count;
    if (opts_.ordered) {
      ordered_.push_back({std::move(fut), count, std::move(src)});
    } else {
      const std::size_t seq = next_seq_++;
      on_complete(*state_of(fut), [o = order_, seq](StateBase&) noexcept { o->push(seq); });
      unordered_.emplace(seq, InFlight{std::move(fut), count, std::move(src)});
    }
  }

  void take_next_chunk() {
    InFlight c;
    if (opts_.ordered) {
      c = std::move(ordered_.front());
      ordered_.pop_front();
    } else {
      order_->wait_beyond(static_cast<std::uint32_t>(taken_), -1);
      const std::size_t seq = order_->at(taken_++);
      auto node = unordered_.extract(seq);
      c = std::move(node.mapped());
    }
    cur_.emplace(c.fut.get());  // chunk tasks never throw; cancellation cannot happen here
    pos_ = 0;
    err_ = 0;
    if (!c.src.valid() && journal_) return;  // restored from the journal: no timing
    adapt(c.count, cur_->elapsed_ns);
  }

  // joblib-style: aim each chunk at target_ns_ from the running per-item time.
  void adapt(std::size_t count, std::int64_t elapsed_ns) {
    if (opts_.chunksize || count == 0) return;
    const double per_item =
        static_cast<double>(std::max<std::int64_t>(elapsed_ns, 1)) / static_cast<double>(count);
    ema_ns_ = ema_ns_ < 0 ? per_item : 0.7 * ema_ns_ + 0.3 * per_item;
    const double ideal = static_cast<double>(target_ns_) / std::max(ema_ns_, 1.0);
    const std::size_t next = static_cast<std::size_t>(std::clamp(ideal, 1.0, max_chunk_));
    // Grow at most 2x per step (a noisy fast chunk must not blow up the batch), shrink at once.
    chunk_ = std::min(next, std::max<std::size_t>(chunk_ * 2, 1));
  }

  void write_stats() noexcept {
    if (!opts_.stats) return;
    opts_.stats->items = yielded_;
    opts_.stats->chunks = chunks_;
    opts_.stats->chunksize = chunk_;
    opts_.stats->seconds = static_cast<double>(now_ns() - t0_) * 1e-9;
    opts_.stats->resumed = resumed_;
    try {
      opts_.stats->checkpoint_error = checkpoint_error_;
    } catch (...) {  // no memory for a copy of the message: the warning was logged already
    }
  }

  Ex& ex_;
  View view_;
  std::shared_ptr<F> f_;
  MapOptions opts_;
  std::optional<std::ranges::iterator_t<View>> it_;
  bool started_ = false;
  bool exhausted_ = false;
  std::size_t chunk_;
  double max_chunk_;
  std::int64_t target_ns_;
  double ema_ns_ = -1;
  std::size_t in_flight_items_ = 0;
  std::size_t pulled_ = 0;
  std::size_t chunks_ = 0;
  std::size_t yielded_ = 0;
  std::int64_t t0_;
  std::deque<InFlight> ordered_;
  std::unordered_map<std::size_t, InFlight> unordered_;
  std::shared_ptr<CompletionOrder> order_ = std::make_shared<CompletionOrder>(0);
  std::size_t next_seq_ = 0;
  std::size_t taken_ = 0;
  std::optional<ChunkResult<R>> cur_;
  std::size_t pos_ = 0;
  std::size_t err_ = 0;
  std::size_t resumed_ = 0;
  std::string name_;  // shown in observe events and the trace
  std::shared_ptr<MapMonitor> monitor_;
  std::shared_ptr<MapCheckpoint<In, R>> journal_;
  std::string checkpoint_error_;  // why the journal stopped recording (MapCheckpoint::close)
};

}  // namespace parx::detail

namespace parx {

// The lazy range returned by imap/imap_unordered. Single pass; iterating pulls input and waits
// for results. Destroying it cancels work not yet started.
template <class Stream>
class MapRange {
 public:
  using value_type = typename Stream::R;

  class iterator {
   public:
    using value_type = MapRange::value_type;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    value_type& operator*() const { return *r_->cur_; }
    iterator& operator++() {
      r_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool at_end() const { return !r_->cur_.has_value(); }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    friend class MapRange;
    explicit iterator(MapRange* r) : r_(r) {}
    MapRange* r_ = nullptr;
  };

  explicit MapRange(std::unique_ptr<Stream> s) : s_(std::move(s)) {}
  MapRange(MapRange&&) noexcept = default;
  MapRange& operator=(MapRange&&) noexcept = default;

  iterator begin() {
    if (!started_) {
      started_ = true;
      advance();
    }
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

  // Pull-style access: the next result or std::nullopt at the end.
  std::optional<value_type> next() { return s_->next(); }

  // The remaining results as a vector, in the range's order (faster than iterating: whole chunks
  // are moved at once). An item's exception is rethrown at its position.
  std::vector<value_type> to_vector() {
    std::vector<value_type> out;
    append_to(out);
    return out;
  }
  // As to_vector, appending to `out`.
  void append_to(std::vector<value_type>& out) {
    if (started_ && cur_) out.push_back(std::move(*cur_));
    cur_.reset();
    started_ = true;
    s_->drain_into(out);
  }

 private:
  void advance() {
    cur_.reset();
    cur_ = s_->next();
  }
  std::unique_ptr<Stream> s_;
  std::optional<value_type> cur_;
  bool started_ = false;
};

}  // namespace parx
