// AsyncSubmit: Intake::Submit as an Asio asynchronous operation, so that a
// connection coroutine can `co_await` the spool's durability verdict. The
// completion runs on the caller's associated executor, never on the spool's
// commit thread.
#pragma once

#include <memory>
#include <utility>

#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include "inject/intake.h"

namespace hikyaku::inject {

template <typename CompletionToken>
auto AsyncSubmit(Intake& intake, Submission submission, CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(Result<MessageId>)>(
      [&intake](auto handler, Submission s) {
        auto work = boost::asio::make_work_guard(boost::asio::get_associated_executor(handler));
        // std::function needs a copyable target; the handler is move-only.
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        intake.Submit(std::move(s), [shared, work](Result<MessageId> result) mutable {
          auto ex = work.get_executor();
          boost::asio::post(ex, [shared, result = std::move(result)]() mutable {
            (*shared)(std::move(result));
          });
          work.reset();
        });
      },
      token, std::move(submission));
}

}  // namespace hikyaku::inject
