// Out-of-line parts of parx/when.hpp.
#include "parx/when.hpp"

namespace parx::detail {

WaitResult wait_states(const std::vector<StateBase*>& states, ReturnWhen when,
                       std::int64_t deadline_ns) {
  auto counter =
      std::make_shared<CompletionCounter>(static_cast<std::uint32_t>(states.size()), when);
  for (StateBase* s : states)
    on_complete(*s, [counter](StateBase& st) noexcept { counter->on_done(st); });
  wait_for_done(*counter, deadline_ns);
  WaitResult r;
  for (std::size_t i = 0; i < states.size(); ++i)
    (states[i]->is_done() ? r.done : r.not_done).push_back(i);
  return r;
}

Future<std::size_t> when_any_states(const std::vector<StateBase*>& states) {
  if (states.empty())
    return make_exceptional_future<std::size_t>(
        std::make_exception_ptr(InvalidArgument("when_any of no futures")));
  struct Ctl {
    std::atomic<bool> fired{false};
    Ref<State<std::size_t>> out{new State<std::size_t>()};
  };
  auto ctl = std::make_shared<Ctl>();
  auto result = make_future<std::size_t>(ctl->out);
  for (std::size_t i = 0; i < states.size(); ++i) {
    on_complete(*states[i], [ctl, i](StateBase&) noexcept {
      if (!ctl->fired.exchange(true, std::memory_order_acq_rel)) ctl->out->set_value(i);
    });
  }
  return result;
}

}  // namespace parx::detail
