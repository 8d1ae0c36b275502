#include "spool/rocksdb_spool.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/file_system.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "spool/codec.h"
#include "testing/temp_dir.h"

namespace hikyaku::spool {
namespace {

namespace fs = std::filesystem;
using std::chrono_literals::operator""ms;

SpoolOptions Options(const fs::path& dir, config::SyncMode sync = config::SyncMode::kGroup) {
  SpoolOptions options;
  options.path = dir / "spool";
  options.sync = sync;
  options.memtable_size = 4 << 20;  // small: tests should not pin 64 MB each
  return options;
}

std::unique_ptr<Spool> MustOpen(const SpoolOptions& options, rocksdb::Env* env = nullptr) {
  auto spool = OpenRocksDbSpool(options, env);
  if (!spool) {
    ADD_FAILURE() << spool.error().ToString();
    return nullptr;
  }
  return std::move(*spool);
}

// Distinct, reproducible content per message so a mix-up shows.
IncomingMessage MakeMessage(uint64_t n, int recipients, size_t size = 600) {
  IncomingMessage m;
  m.id = MessageId((uint64_t{1'700'000'000'000} << 22) + n);
  m.sender = n % 7 == 0 ? "" : "bounce-" + std::to_string(n) + "@sender.example";
  for (int r = 0; r < recipients; ++r)
    m.recipients.push_back("user" + std::to_string(n) + "." + std::to_string(r) + "@rcpt.example");
  std::mt19937_64 rng(n);
  m.content = "Message-ID: <" + std::to_string(n) + "@sender.example>\r\n\r\n";
  while (m.content.size() < size) m.content += "word" + std::to_string(rng() % 1000) + " ";
  m.content.resize(size);
  m.received_at = FromUnixMillis(1'700'000'000'000 + static_cast<int64_t>(n));
  m.origin = "smtp 127.0.0.1";
  // Some with a tenant, some urgent, most with neither (meta versions 1 and 2).
  if (n % 3 == 1) m.tenant = "tenant-" + std::to_string(n % 4);
  if (n % 5 == 0) m.priority = 1;
  return m;
}

// The n that MakeMessage(n, ...) gave `id`.
int SerialOf(MessageId id) { return static_cast<int>(id.value() - MakeMessage(0, 0, 0).id.value()); }

Result<void> AppendAndWait(Spool& spool, IncomingMessage m) {
  std::promise<Result<void>> promise;
  auto future = promise.get_future();
  spool.Append(std::move(m), [&promise](Result<void> r) { promise.set_value(std::move(r)); });
  return future.get();
}

Result<void> UpdateAndWait(Spool& spool, const RecipientRecord& record) {
  std::promise<Result<void>> promise;
  auto future = promise.get_future();
  spool.UpdateRecipient(record, [&promise](Result<void> r) { promise.set_value(std::move(r)); });
  return future.get();
}

std::vector<RecipientRecord> Pending(Spool& spool) {
  std::vector<RecipientRecord> out;
  auto r = spool.ForEachPending([&](const RecipientRecord& rec) { out.push_back(rec); });
  EXPECT_TRUE(r) << r.error().ToString();
  return out;
}

void ExpectStored(Spool& spool, const IncomingMessage& want) {
  auto got = spool.ReadMessage(want.id);
  ASSERT_TRUE(got) << want.id.ToString() << ": " << got.error().ToString();
  EXPECT_EQ(got->id, want.id);
  EXPECT_EQ(got->sender, want.sender);
  EXPECT_EQ(got->recipients, want.recipients);
  EXPECT_EQ(got->content, want.content);
  EXPECT_EQ(got->received_at, want.received_at);
  EXPECT_EQ(got->origin, want.origin);
  EXPECT_EQ(got->tenant, want.tenant);
  EXPECT_EQ(got->priority, want.priority);
}

TEST(RocksDbSpoolTest, AppendedMessageReadsBack) {
  TempDir dir;
  auto spool = MustOpen(Options(dir.path()));
  ASSERT_TRUE(spool);
  IncomingMessage m = MakeMessage(1, 2, 5000);
  ASSERT_TRUE(AppendAndWait(*spool, m));
  ExpectStored(*spool, m);
  EXPECT_EQ(spool->ReadMessage(MessageId(12345)).error().code(), ErrorCode::kNotFound);
  SpoolStats stats = spool->Stats();
  EXPECT_EQ(stats.appends, 1u);
  EXPECT_EQ(stats.commit_groups, 1u);
  EXPECT_EQ(stats.syncs, 1u);
  EXPECT_GT(stats.wal_bytes, 0u);
  // The codec compressed the body: the journal holds less than the message.
  EXPECT_LT(stats.wal_bytes, m.content.size());
}

TEST(RocksDbSpoolTest, EnvelopeContentAndChosenRecipientsReadBackAlone) {
  TempDir dir;
  auto spool = MustOpen(Options(dir.path()));
  ASSERT_TRUE(spool);
  IncomingMessage m = MakeMessage(1, 5, 3000);  // n = 1: with a tenant
  ASSERT_TRUE(AppendAndWait(*spool, m));

  auto envelope = spool->ReadEnvelope(m.id);
  ASSERT_TRUE(envelope) << envelope.error().ToString();
  EXPECT_EQ(envelope->id, m.id);
  EXPECT_EQ(envelope->sender, m.sender);
  EXPECT_EQ(envelope->received_at, m.received_at);
  EXPECT_EQ(envelope->origin, m.origin);
  EXPECT_EQ(envelope->recipient_count, 5u);
  EXPECT_EQ(envelope->tenant, m.tenant);
  EXPECT_FALSE(envelope->tenant.empty());

  auto content = spool->ReadContent(m.id);
  ASSERT_TRUE(content) << content.error().ToString();
  EXPECT_EQ(content->content, m.content);
  EXPECT_EQ(content->envelope.recipient_count, 5u);
  EXPECT_EQ(content->envelope.sender, m.sender);

  const uint32_t chosen[] = {4, 0, 4, 2};
  auto addresses = spool->ReadRecipients(m.id, chosen);
  ASSERT_TRUE(addresses) << addresses.error().ToString();
  EXPECT_EQ(*addresses, (std::vector<std::string>{m.recipients[4], m.recipients[0], m.recipients[4], m.recipients[2]}));

  const uint32_t past_the_end[] = {1, 5};
  EXPECT_EQ(spool->ReadRecipients(m.id, past_the_end).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(spool->ReadEnvelope(MessageId(12345)).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(spool->ReadContent(MessageId(12345)).error().code(), ErrorCode::kNotFound);
  const uint32_t first[] = {0};
  EXPECT_EQ(spool->ReadRecipients(MessageId(12345), first).error().code(), ErrorCode::kNotFound);

  // Gone with the message.
  std::promise<Result<void>> removed;
  spool->RemoveMessage(m.id, 5, [&](Result<void> r) { removed.set_value(r); });
  ASSERT_TRUE(removed.get_future().get());
  EXPECT_EQ(spool->ReadContent(m.id).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(spool->ReadRecipients(m.id, first).error().code(), ErrorCode::kNotFound);
}

TEST(RocksDbSpoolTest, RefusesMessagesWithoutRecipientsAndDuplicateIds) {
  TempDir dir;
  auto spool = MustOpen(Options(dir.path()));
  ASSERT_TRUE(spool);
  IncomingMessage none = MakeMessage(1, 0);
  EXPECT_EQ(AppendAndWait(*spool, none).error().code(), ErrorCode::kInvalidArgument);

  IncomingMessage original = MakeMessage(2, 1);
  ASSERT_TRUE(AppendAndWait(*spool, original));
  IncomingMessage impostor = MakeMessage(3, 2);
  impostor.id = original.id;
  auto r = AppendAndWait(*spool, impostor);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  ExpectStored(*spool, original);
  EXPECT_EQ(spool->Stats().failed_appends, 2u);
}

// The duplicate check skips the lookup for ids above every stored one, so
// after a restart it must know the stored ids, and an older id (the clock
// stepped back) must still be looked up rather than refused or overwritten.
TEST(RocksDbSpoolTest, DuplicateIdsAreRefusedAfterAReopenToo) {
  TempDir dir;
  const IncomingMessage newest = MakeMessage(50, 1);
  {
    auto spool = MustOpen(Options(dir.path()));
    ASSERT_TRUE(AppendAndWait(*spool, MakeMessage(10, 1)));
    ASSERT_TRUE(AppendAndWait(*spool, newest));
    spool->Close();
  }
  auto spool = MustOpen(Options(dir.path()));
  for (uint64_t n : {10u, 50u}) {
    IncomingMessage impostor = MakeMessage(n + 1000, 2);
    impostor.id = MakeMessage(n, 1).id;
    auto r = AppendAndWait(*spool, impostor);
    ASSERT_FALSE(r) << n;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  }
  ExpectStored(*spool, newest);
  ExpectStored(*spool, MakeMessage(10, 1));
  const IncomingMessage older = MakeMessage(20, 1);  // below the highest id, not stored
  ASSERT_TRUE(AppendAndWait(*spool, older));
  ExpectStored(*spool, older);
  const IncomingMessage newer = MakeMessage(60, 1);
  ASSERT_TRUE(AppendAndWait(*spool, newer));
  IncomingMessage again = MakeMessage(61, 1);
  again.id = newer.id;
  EXPECT_FALSE(AppendAndWait(*spool, again));
}

TEST(RocksDbSpoolTest, ReopenRecoversEveryRecipientOldestFirst) {
  TempDir dir;
  constexpr int kMessages = 300, kRecipients = 4;
  std::vector<IncomingMessage> sent;
  {
    auto spool = MustOpen(Options(dir.path()));
    ASSERT_TRUE(spool);
    // Appended newest first: recovery order must come from the ids.
    for (int n = kMessages; n >= 1; --n) {
      sent.push_back(MakeMessage(n, kRecipients));
      ASSERT_TRUE(AppendAndWait(*spool, sent.back()));
    }
    spool->Close();
  }
  auto spool = MustOpen(Options(dir.path()));
  ASSERT_TRUE(spool);
  auto pending = Pending(*spool);
  ASSERT_EQ(pending.size(), size_t{kMessages} * kRecipients);
  std::map<MessageId, const IncomingMessage*> by_id;
  for (const auto& m : sent) by_id[m.id] = &m;
  for (size_t i = 0; i < pending.size(); ++i) {
    const RecipientRecord& r = pending[i];
    if (i > 0) {
      const RecipientRecord& prev = pending[i - 1];
      ASSERT_TRUE(prev.message < r.message || (prev.message == r.message && prev.index < r.index));
    }
    const IncomingMessage& m = *by_id.at(r.message);
    EXPECT_EQ(r.recipient, m.recipients.at(r.index));
    EXPECT_EQ(r.state, RecipientState::kQueued);
    EXPECT_EQ(r.attempts, 0u);
    EXPECT_EQ(r.next_attempt, m.received_at);
    // Recovery puts the mail back in its flow: tenant and priority come
    // from the meta record.
    EXPECT_EQ(r.tenant, m.tenant) << r.message.ToString();
    EXPECT_EQ(r.priority, m.priority) << r.message.ToString();
  }
  for (const auto& m : sent) ExpectStored(*spool, m);
}

TEST(RocksDbSpoolTest, BodiesSurviveFlushToBlobFiles) {
  TempDir dir;
  SpoolOptions options = Options(dir.path());
  options.memtable_size = 1 << 20;
  std::vector<IncomingMessage> sent;
  std::mt19937 rng(3);
  {
    auto spool = MustOpen(options);
    ASSERT_TRUE(spool);
    // Incompressible 4 KB bodies: 600 of them fill the 1 MB memtable twice.
    for (int n = 1; n <= 600; ++n) {
      IncomingMessage m = MakeMessage(n, 1);
      m.content.resize(4096);
      for (size_t i = 100; i < m.content.size(); ++i) m.content[i] = static_cast<char>(rng());
      sent.push_back(m);
      ASSERT_TRUE(AppendAndWait(*spool, std::move(m)));
    }
    for (const auto& m : sent) ExpectStored(*spool, m);
    spool->Close();
  }
  size_t blob_files = 0;
  for (const auto& entry : fs::directory_iterator(options.path))
    if (entry.path().extension() == ".blob") ++blob_files;
  EXPECT_GE(blob_files, 1u) << "bodies were not separated into blob files";

  auto spool = MustOpen(options);
  ASSERT_TRUE(spool);
  for (const auto& m : sent) ExpectStored(*spool, m);
  EXPECT_EQ(Pending(*spool).size(), sent.size());
}

TEST(RocksDbSpoolTest, ConcurrentAppendersShareSyncs) {
  TempDir dir;
  constexpr int kThreads = 8, kPerThread = 2000, kWindow = 8;
  auto spool = MustOpen(Options(dir.path()));
  ASSERT_TRUE(spool);
  std::vector<std::atomic<int>> calls(kThreads * kPerThread);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each thread behaves like kWindow SMTP sessions: at most kWindow
      // appends of its own in flight.
      std::mutex mu;
      std::condition_variable cv;
      int in_flight = 0;
      for (int i = 0; i < kPerThread; ++i) {
        {
          std::unique_lock lock(mu);
          cv.wait(lock, [&] { return in_flight < kWindow; });
          ++in_flight;
        }
        const int n = t * kPerThread + i;
        spool->Append(MakeMessage(n + 1, 2, 200), [&, n](Result<void> r) {
          calls[n].fetch_add(1);
          if (!r) failures.fetch_add(1);
          std::lock_guard lock(mu);
          --in_flight;
          cv.notify_one();
        });
      }
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return in_flight == 0; });
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  for (int n = 0; n < kThreads * kPerThread; ++n) ASSERT_EQ(calls[n].load(), 1) << "message " << n;

  SpoolStats stats = spool->Stats();
  EXPECT_EQ(stats.appends, uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(stats.syncs, stats.commit_groups);
  // With 64 appends in flight, groups must be large; 1 sync per 4 appends
  // would mean group commit is not happening.
  EXPECT_LT(stats.syncs * 4, stats.appends) << "syncs " << stats.syncs;
  spool->Close();

  auto reopened = MustOpen(Options(dir.path()));
  ASSERT_TRUE(reopened);
  EXPECT_EQ(Pending(*reopened).size(), size_t{kThreads} * kPerThread * 2);
}

TEST(RocksDbSpoolTest, CloseDrainsQueuedAppendsThenRefusesNewOnes) {
  TempDir dir;
  constexpr int kMessages = 500;
  std::atomic<int> ok{0}, calls{0};
  {
    auto spool = MustOpen(Options(dir.path()));
    ASSERT_TRUE(spool);
    for (int n = 1; n <= kMessages; ++n) {
      spool->Append(MakeMessage(n, 1), [&](Result<void> r) {
        calls.fetch_add(1);
        if (r) ok.fetch_add(1);
      });
    }
    spool->Close();  // without waiting for any callback
    EXPECT_EQ(calls.load(), kMessages);
    EXPECT_EQ(ok.load(), kMessages);

    auto late = AppendAndWait(*spool, MakeMessage(kMessages + 1, 1));
    ASSERT_FALSE(late);
    EXPECT_EQ(late.error().code(), ErrorCode::kUnavailable);
    EXPECT_EQ(spool->ReadMessage(MakeMessage(1, 1).id).error().code(), ErrorCode::kUnavailable);
    spool->Close();  // idempotent
  }
  auto spool = MustOpen(Options(dir.path()));
  ASSERT_TRUE(spool);
  EXPECT_EQ(Pending(*spool).size(), size_t{kMessages});
}

TEST(RocksDbSpoolTest, SyncNoneStillCommitsThroughTheWal) {
  TempDir dir;
  const SpoolOptions options = Options(dir.path(), config::SyncMode::kNone);
  std::vector<IncomingMessage> sent;
  {
    auto spool = MustOpen(options);
    ASSERT_TRUE(spool);
    for (int n = 1; n <= 50; ++n) {
      sent.push_back(MakeMessage(n, 1));
      ASSERT_TRUE(AppendAndWait(*spool, sent.back()));
    }
    EXPECT_EQ(spool->Stats().syncs, 0u);
    EXPECT_EQ(spool->Stats().commit_groups, 50u);
  }  // destructor closes
  auto spool = MustOpen(options);
  ASSERT_TRUE(spool);
  for (const auto& m : sent) ExpectStored(*spool, m);
}

TEST(RocksDbSpoolTest, UpdateRecipientChangesStateDurably) {
  TempDir dir;
  IncomingMessage m = MakeMessage(1, 3);
  {
    auto spool = MustOpen(Options(dir.path()));
    ASSERT_TRUE(spool);
    ASSERT_TRUE(AppendAndWait(*spool, m));
    RecipientRecord delivered{m.id, 0, "ignored@example", RecipientState::kDelivered, 1, FromUnixMillis(5), {}, 0};
    ASSERT_TRUE(UpdateAndWait(*spool, delivered));
    RecipientRecord deferred{m.id, 2, "", RecipientState::kQueued, 3, FromUnixMillis(1'700'000'600'000), {}, 0};
    ASSERT_TRUE(UpdateAndWait(*spool, deferred));
    RecipientRecord missing{m.id, 3, "", RecipientState::kBounced, 1, FromUnixMillis(0), {}, 0};
    EXPECT_EQ(UpdateAndWait(*spool, missing).error().code(), ErrorCode::kNotFound);
    RecipientRecord no_message{MessageId(99), 0, "", RecipientState::kBounced, 1, FromUnixMillis(0), {}, 0};
    EXPECT_EQ(UpdateAndWait(*spool, no_message).error().code(), ErrorCode::kNotFound);
    EXPECT_EQ(spool->Stats().updates, 2u);
  }
  auto spool = MustOpen(Options(dir.path()));
  ASSERT_TRUE(spool);
  auto pending = Pending(*spool);
  ASSERT_EQ(pending.size(), 2u);  // index 0 is final
  EXPECT_EQ(pending[0].index, 1u);
  EXPECT_EQ(pending[0].attempts, 0u);
  EXPECT_EQ(pending[1].index, 2u);
  EXPECT_EQ(pending[1].recipient, m.recipients[2]);  // address unchanged
  EXPECT_EQ(pending[1].attempts, 3u);
  EXPECT_EQ(pending[1].next_attempt, FromUnixMillis(1'700'000'600'000));
  ExpectStored(*spool, m);  // final recipients stay listed
}

TEST(RocksDbSpoolTest, RemoveMessageDeletesEveryRecordDurably) {
  TempDir dir;
  IncomingMessage gone = MakeMessage(1, 3, 5000);
  IncomingMessage kept = MakeMessage(2, 2);
  {
    auto spool = MustOpen(Options(dir.path()));
    ASSERT_TRUE(spool);
    ASSERT_TRUE(AppendAndWait(*spool, gone));
    ASSERT_TRUE(AppendAndWait(*spool, kept));
    std::promise<Result<void>> promise;
    spool->RemoveMessage(gone.id, 3, [&promise](Result<void> r) { promise.set_value(std::move(r)); });
    ASSERT_TRUE(promise.get_future().get());
    EXPECT_EQ(spool->ReadMessage(gone.id).error().code(), ErrorCode::kNotFound);
  }
  auto spool = MustOpen(Options(dir.path()));
  ASSERT_TRUE(spool);
  auto pending = Pending(*spool);
  ASSERT_EQ(pending.size(), 2u);  // only the kept message's recipients
  EXPECT_EQ(pending[0].message, kept.id);
  EXPECT_EQ(spool->ReadMessage(gone.id).error().code(), ErrorCode::kNotFound);
  ExpectStored(*spool, kept);
}

uint64_t BlobBytes(const std::filesystem::path& dir) {
  uint64_t total = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".blob") total += e.file_size();
  return total;
}

TEST(RocksDbSpoolTest, SpaceOfRemovedMessagesComesBackOnceQuiet) {
  TempDir dir;
  SpoolOptions options = Options(dir.path());
  options.memtable_size = 1 << 20;  // bodies reach blob files early
  options.reclaim_after_removes = 10;
  options.reclaim_idle = std::chrono::milliseconds(200);
  auto spool = MustOpen(options);
  ASSERT_TRUE(spool);
  std::mt19937_64 rng(7);
  std::vector<IncomingMessage> messages;
  for (uint64_t n = 1; n <= 400; ++n) {
    IncomingMessage m = MakeMessage(n, 1, 100);
    std::string noise(8000, '\0');
    for (auto& c : noise) c = static_cast<char>('A' + rng() % 26 + (rng() % 2) * 32);  // hardly compressible
    m.content += noise;
    ASSERT_TRUE(AppendAndWait(*spool, m));
    messages.push_back(std::move(m));
  }
  // A memtable of 1 MB and ~2.5 MB of compressed bodies: flushes put some
  // into blob files (flushes run in the background).
  for (int i = 0; i < 100 && BlobBytes(options.path) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_GT(BlobBytes(options.path), 0u);
  for (const auto& m : messages) {
    std::promise<Result<void>> promise;
    spool->RemoveMessage(m.id, 1, [&promise](Result<void> r) { promise.set_value(std::move(r)); });
    ASSERT_TRUE(promise.get_future().get());
  }
  for (int i = 0; i < 100 && spool->Stats().reclaims == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_GE(spool->Stats().reclaims, 1u);
  for (int i = 0; i < 100 && BlobBytes(options.path) > 0; ++i)  // obsolete files go in the background
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(BlobBytes(options.path), 0u) << "blob files of removed messages are still on disk";
  EXPECT_TRUE(Pending(*spool).empty());
}

TEST(RocksDbSpoolTest, UpdateInTheSameGroupAsItsAppendApplies) {
  TempDir dir;
  IncomingMessage m = MakeMessage(1, 2);
  auto spool = MustOpen(Options(dir.path()));
  ASSERT_TRUE(spool);
  std::promise<Result<void>> appended, updated, updated_again;
  // Queued back to back: almost always one commit group, which is the path
  // under test; if they split, the result must be the same.
  spool->Append(m, [&](Result<void> r) { appended.set_value(r); });
  spool->UpdateRecipient({m.id, 1, "", RecipientState::kQueued, 1, FromUnixMillis(10), {}, 0},
                         [&](Result<void> r) { updated.set_value(r); });
  spool->UpdateRecipient({m.id, 1, "", RecipientState::kQueued, 2, FromUnixMillis(20), {}, 0},
                         [&](Result<void> r) { updated_again.set_value(r); });
  ASSERT_TRUE(appended.get_future().get());
  ASSERT_TRUE(updated.get_future().get());
  ASSERT_TRUE(updated_again.get_future().get());
  auto pending = Pending(*spool);
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_EQ(pending[1].recipient, m.recipients[1]);
  EXPECT_EQ(pending[1].attempts, 2u);
  EXPECT_EQ(pending[1].next_attempt, FromUnixMillis(20));
}

TEST(RocksDbSpoolTest, RefusesUnknownFormatAndReportsCorruptRecords) {
  TempDir dir;
  const SpoolOptions options = Options(dir.path());
  {
    auto spool = MustOpen(options);
    ASSERT_TRUE(spool);
    ASSERT_TRUE(AppendAndWait(*spool, MakeMessage(1, 1)));
  }
  auto tamper = [&](const std::string& family, const std::string& key, const std::string& value) {
    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, {}}, {"content", {}}, {"meta", {}}, {"recipients", {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::DBOptions(), options.path.string(), families, &handles, &db).ok());
    size_t i = 0;
    while (families[i].name != family) ++i;
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[i], key, value).ok());
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    delete db;
  };

  tamper("recipients", RecipientKey(MessageId(5), 0), std::string("\x01\x09", 2));
  {
    auto spool = MustOpen(options);
    ASSERT_TRUE(spool);
    auto r = spool->ForEachPending([](const RecipientRecord&) {});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::kCorruption);
  }

  tamper("default", "hikyaku-spool-format", "9");
  auto reopened = OpenRocksDbSpool(options);
  ASSERT_FALSE(reopened);
  EXPECT_EQ(reopened.error().code(), ErrorCode::kCorruption);
}

// A spool as format 1 left it (RocksDB's WAL as the log, its last writes
// not yet flushed) opens with every message, and is upgraded to format 2.
TEST(RocksDbSpoolTest, OpensAFormat1SpoolAndUpgradesIt) {
  TempDir dir;
  const SpoolOptions options = Options(dir.path());
  IncomingMessage old = MakeMessage(1, 2, 3000);
  old.tenant.clear();  // format 1 predates tenants
  old.priority = 0;
  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, {}}, {"content", {}}, {"meta", {}}, {"recipients", {}}};
  {
    rocksdb::DBOptions db_options;
    db_options.create_if_missing = true;
    db_options.create_missing_column_families = true;
    db_options.avoid_flush_during_shutdown = true;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(db_options, options.path.string(), families, &handles, &db).ok());
    rocksdb::WriteBatch batch;
    ASSERT_TRUE(batch.Put(handles[0], "hikyaku-spool-format", "1").ok());
    MessageMeta meta;
    meta.sender = old.sender;
    meta.received_at = old.received_at;
    meta.origin = old.origin;
    meta.recipient_count = 2;
    meta.content_size = old.content.size();
    ASSERT_TRUE(batch.Put(handles[1], MessageKey(old.id), EncodeContent(old.content, true)).ok());
    ASSERT_TRUE(batch.Put(handles[2], MessageKey(old.id), EncodeMeta(meta)).ok());
    for (uint32_t i = 0; i < 2; ++i) {
      RecipientRecord record;
      record.recipient = old.recipients[i];
      record.next_attempt = old.received_at;
      ASSERT_TRUE(batch.Put(handles[3], RecipientKey(old.id, i), EncodeRecipient(record)).ok());
    }
    rocksdb::WriteOptions write;
    write.sync = true;
    ASSERT_TRUE(db->Write(write, &batch).ok());
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    ASSERT_TRUE(db->Close().ok());
    delete db;
  }
  // What the test claims to set up: the message is only in a WAL file.
  bool wal_with_data = false;
  for (const auto& entry : fs::directory_iterator(options.path))
    if (entry.path().extension() == ".log" && entry.file_size() > 0) wal_with_data = true;
  ASSERT_TRUE(wal_with_data);

  const IncomingMessage fresh = MakeMessage(2, 1, 3000);
  {
    auto spool = MustOpen(options);
    ASSERT_TRUE(spool);
    ExpectStored(*spool, old);
    EXPECT_EQ(Pending(*spool).size(), 2u);
    ASSERT_TRUE(AppendAndWait(*spool, fresh));
  }
  {
    rocksdb::DB* db = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    ASSERT_TRUE(
        rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), options.path.string(), families, &handles, &db).ok());
    std::string format;
    EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), handles[0], "hikyaku-spool-format", &format).ok());
    EXPECT_EQ(format, "2");
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    delete db;
  }
  auto spool = MustOpen(options);
  ASSERT_TRUE(spool);
  ExpectStored(*spool, old);
  ExpectStored(*spool, fresh);
  EXPECT_EQ(Pending(*spool).size(), 3u);
}

// Once flushes have passed them, journal segments are overwritten instead of
// new files being made, and a reopen after many rounds finds every message.
TEST(RocksDbSpoolTest, JournalSegmentsAreReusedOnceFlushed) {
  TempDir dir;
  SpoolOptions options = Options(dir.path());
  options.memtable_size = 1 << 20;  // a flush every few hundred messages; 1 MB segments
  constexpr int kCount = 4000;
  {
    auto spool = MustOpen(options);
    ASSERT_TRUE(spool);
    std::atomic<int> done{0}, failed{0};
    std::promise<void> all;
    for (int n = 1; n <= kCount; ++n) {
      spool->Append(MakeMessage(n, 1, 4000), [&](Result<void> r) {
        if (!r) failed.fetch_add(1);
        if (done.fetch_add(1) + 1 == kCount) all.set_value();
      });
    }
    all.get_future().wait();
    ASSERT_EQ(failed.load(), 0);
    const SpoolStats stats = spool->Stats();
    EXPECT_GT(stats.journal_segments_reused, 0u);
    // How many are reused rather than made depends on how soon the
    // background flushes pass them (later on a loaded machine), but the
    // files made stay few: the segments go round.
    EXPECT_LE(stats.journal_segments_created, 12u);
    EXPECT_GT(stats.wal_bytes, 4u << 20) << "too little journal for several segments";
  }
  size_t segments = 0;
  for (const auto& entry : fs::directory_iterator(options.path / "journal"))
    if (entry.path().extension() == ".journal") ++segments;
  EXPECT_LE(segments, 12u) << "spare segments are not deleted";
  auto spool = MustOpen(options);
  ASSERT_TRUE(spool);
  EXPECT_EQ(Pending(*spool).size(), static_cast<size_t>(kCount));
  for (int n = 1; n <= kCount; n += 97) ExpectStored(*spool, MakeMessage(n, 1, 4000));
  ExpectStored(*spool, MakeMessage(kCount, 1, 4000));
}

// --- Disk full ---------------------------------------------------------------

// A file system whose journal files (and, in kEverything mode, all files)
// fail every write, sync and reservation with ENOSPC while `full` is set.
// kJournalSyncs: journal writes still land (in the page cache), only their
// syncs fail, so a refused group's record is in the file, whole.
class FillableFileSystem : public rocksdb::FileSystemWrapper {
 public:
  enum class Scope { kJournal, kJournalSyncs, kEverything };
  explicit FillableFileSystem(Scope scope)
      : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()), scope_(scope) {}
  const char* Name() const override { return "FillableFileSystem"; }

  std::atomic<bool> full{false};

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    if (full && Covers(name)) return rocksdb::IOStatus::NoSpace("injected: disk full");
    auto s = target()->NewWritableFile(name, options, result, dbg);
    if (s.ok() && Covers(name)) *result = std::make_unique<File>(std::move(*result), this);
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override {
    auto s = target()->ReopenWritableFile(name, options, result, dbg);
    if (s.ok() && Covers(name)) *result = std::make_unique<File>(std::move(*result), this);
    return s;
  }
  rocksdb::IOStatus NewRandomRWFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSRandomRWFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    if (full && Covers(name) && scope_ != Scope::kJournalSyncs) {
      // A new segment cannot be created; an existing one can be opened.
      if (!target()->FileExists(name, options.io_options, dbg).ok())
        return rocksdb::IOStatus::NoSpace("injected: disk full");
    }
    auto s = target()->NewRandomRWFile(name, options, result, dbg);
    if (s.ok() && Covers(name)) *result = std::make_unique<RWFile>(std::move(*result), this);
    return s;
  }

 private:
  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> target, FillableFileSystem* fs)
        : rocksdb::FSWritableFileOwnerWrapper(std::move(target)), fs_(fs) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
      if (fs_->full) return rocksdb::IOStatus::NoSpace("injected: disk full");
      return target()->Append(data, o, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& v, rocksdb::IODebugContext* dbg) override {
      if (fs_->full) return rocksdb::IOStatus::NoSpace("injected: disk full");
      return target()->Append(data, o, v, dbg);
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset, const rocksdb::IOOptions& o,
                                       rocksdb::IODebugContext* dbg) override {
      if (fs_->full) return rocksdb::IOStatus::NoSpace("injected: disk full");
      return target()->PositionedAppend(data, offset, o, dbg);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (fs_->full) return rocksdb::IOStatus::NoSpace("injected: disk full");
      return target()->Sync(o, dbg);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (fs_->full) return rocksdb::IOStatus::NoSpace("injected: disk full");
      return target()->Fsync(o, dbg);
    }
    rocksdb::IOStatus Allocate(uint64_t offset, uint64_t len, const rocksdb::IOOptions& o,
                               rocksdb::IODebugContext* dbg) override {
      if (fs_->full) return rocksdb::IOStatus::NoSpace("injected: disk full");
      return target()->Allocate(offset, len, o, dbg);
    }

   private:
    FillableFileSystem* fs_;
  };
  // A journal segment: on a really full disk, overwriting its blocks would
  // still work; failing it too is the harder case.
  class RWFile : public rocksdb::FSRandomRWFileOwnerWrapper {
   public:
    RWFile(std::unique_ptr<rocksdb::FSRandomRWFile> target, FillableFileSystem* fs)
        : rocksdb::FSRandomRWFileOwnerWrapper(std::move(target)), fs_(fs) {}
    rocksdb::IOStatus Write(uint64_t offset, const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                            rocksdb::IODebugContext* dbg) override {
      if (fs_->full && fs_->scope_ != Scope::kJournalSyncs) return rocksdb::IOStatus::NoSpace("injected: disk full");
      return target()->Write(offset, data, o, dbg);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (fs_->full) return rocksdb::IOStatus::NoSpace("injected: disk full");
      return target()->Sync(o, dbg);
    }

   private:
    FillableFileSystem* fs_;
  };

  bool Covers(const std::string& name) const {
    if (scope_ == Scope::kEverything) return name.find("/LOG") == std::string::npos;  // keep RocksDB's own log
    return name.find("/journal/") != std::string::npos;
  }

  const Scope scope_;
};

class DiskFullTest : public ::testing::TestWithParam<FillableFileSystem::Scope> {};

TEST_P(DiskFullTest, AppendsFailWithNoSpaceAndRecoverWhenSpaceReturns) {
  TempDir dir;
  const SpoolOptions options = Options(dir.path());
  auto fs = std::make_shared<FillableFileSystem>(GetParam());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  std::vector<IncomingMessage> accepted, refused;
  {
    auto spool = MustOpen(options, env.get());
    ASSERT_TRUE(spool);
    for (int n = 1; n <= 20; ++n) {
      accepted.push_back(MakeMessage(n, 2, 3000));
      ASSERT_TRUE(AppendAndWait(*spool, accepted.back()));
    }

    fs->full = true;
    for (int n = 21; n <= 25; ++n) {
      refused.push_back(MakeMessage(n, 2, 3000));
      auto r = AppendAndWait(*spool, refused.back());
      ASSERT_FALSE(r) << "append " << n << " succeeded on a full disk";
      EXPECT_EQ(r.error().code(), ErrorCode::kNoSpace) << r.error().ToString();
    }
    // Past the resume interval the spool tries to recover, finds no room
    // and leaves the database alone: reads of accepted mail, i.e.
    // deliveries, keep working.
    std::this_thread::sleep_for(1100ms);
    refused.push_back(MakeMessage(26, 2, 3000));
    EXPECT_EQ(AppendAndWait(*spool, refused.back()).error().code(), ErrorCode::kNoSpace);
    for (const auto& m : accepted) ExpectStored(*spool, m);
    EXPECT_EQ(Pending(*spool).size(), accepted.size() * 2);

    fs->full = false;
    // The first append after the disk empties may still see the stopped
    // database; the spool resumes it (at most once a second) by itself.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    int n = 100;
    for (;;) {
      IncomingMessage m = MakeMessage(n++, 2, 3000);
      auto r = AppendAndWait(*spool, m);
      if (r) {
        accepted.push_back(std::move(m));
        break;
      }
      EXPECT_EQ(r.error().code(), ErrorCode::kNoSpace) << r.error().ToString();
      refused.push_back(std::move(m));
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "spool never recovered from disk full";
      std::this_thread::sleep_for(100ms);
    }
    for (int k = 0; k < 10; ++k) {
      accepted.push_back(MakeMessage(200 + k, 2, 3000));
      ASSERT_TRUE(AppendAndWait(*spool, accepted.back()));
    }
    for (const auto& m : accepted) ExpectStored(*spool, m);
    EXPECT_GE(spool->Stats().resumes, 1u);
    spool->Close();
  }
  // Reopen on the plain file system: everything acknowledged is there,
  // nothing refused is.
  auto spool = MustOpen(options);
  ASSERT_TRUE(spool);
  for (const auto& m : accepted) ExpectStored(*spool, m);
  for (const auto& m : refused) EXPECT_EQ(spool->ReadMessage(m.id).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(Pending(*spool).size(), accepted.size() * 2);
}

TEST_P(DiskFullTest, CloseWhileFullKeepsAcceptedMail) {
  TempDir dir;
  const SpoolOptions options = Options(dir.path());
  auto fs = std::make_shared<FillableFileSystem>(GetParam());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  std::vector<IncomingMessage> accepted;
  {
    auto spool = MustOpen(options, env.get());
    ASSERT_TRUE(spool);
    for (int n = 1; n <= 30; ++n) {
      accepted.push_back(MakeMessage(n, 3));
      ASSERT_TRUE(AppendAndWait(*spool, accepted.back()));
    }
    fs->full = true;
    EXPECT_EQ(AppendAndWait(*spool, MakeMessage(31, 3)).error().code(), ErrorCode::kNoSpace);
    spool->Close();  // the operator stops the daemon with the disk still full
  }
  auto spool = MustOpen(options);
  ASSERT_TRUE(spool);
  for (const auto& m : accepted) ExpectStored(*spool, m);
  EXPECT_EQ(spool->ReadMessage(MakeMessage(31, 3).id).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(Pending(*spool).size(), accepted.size() * 3);
}

INSTANTIATE_TEST_SUITE_P(Scopes, DiskFullTest,
                         ::testing::Values(FillableFileSystem::Scope::kJournal,
                                           FillableFileSystem::Scope::kJournalSyncs,
                                           FillableFileSystem::Scope::kEverything),
                         [](const auto& info) {
                           switch (info.param) {
                             case FillableFileSystem::Scope::kJournal: return "JournalOnly";
                             case FillableFileSystem::Scope::kJournalSyncs: return "JournalSyncsOnly";
                             default: return "Everything";
                           }
                         });

// --- Crash -------------------------------------------------------------------

// What a crash child was started with by RunCrashChild: its spool
// directory and the pipe for acknowledged ids; nullopt in a normal run.
struct CrashChildSetup {
  std::string dir;
  int fd = -1;
};
std::optional<CrashChildSetup> CrashChild() {
  const char* dir = std::getenv("HIKYAKU_SPOOL_CRASH_DIR");
  const char* fd_text = std::getenv("HIKYAKU_SPOOL_CRASH_FD");
  if (dir == nullptr || fd_text == nullptr) return std::nullopt;
  return CrashChildSetup{dir, std::atoi(fd_text)};
}

// Appends messages 1..count (made by `make`) all at once, reports each
// acknowledged id on `fd`, and kills the process with SIGKILL (no Close, no
// destructors) once `die_after` were acknowledged, with writes in flight.
template <typename Make>
[[noreturn]] void AppendReportAndDie(Spool& spool, int fd, int count, int die_after, Make make) {
  std::atomic<int> acked{0};
  std::mutex write_mu;
  for (int n = 1; n <= count; ++n) {
    spool.Append(make(n), [&, n](Result<void> r) {
      if (!r) return;
      std::lock_guard lock(write_mu);
      const uint64_t id = MakeMessage(n, 0, 0).id.value();
      if (write(fd, &id, sizeof id) != sizeof id) _exit(4);
      if (acked.fetch_add(1) + 1 == die_after) kill(getpid(), SIGKILL);
    });
  }
  for (;;) pause();
}

// The child half of CrashAfterAckKeepsAcknowledgedMail: runs only when that
// test re-executes this binary. Appends with many writes in flight, reports
// each acknowledged id on a pipe, and kills itself with SIGKILL (no Close,
// no destructors) once enough have been acknowledged.
TEST(RocksDbSpoolCrashChild, AppendThenDie) {
  auto child = CrashChild();
  if (!child) GTEST_SKIP() << "only run as the child of the crash test";
  auto spool = OpenRocksDbSpool(Options(child->dir));
  if (!spool) _exit(3);
  AppendReportAndDie(**spool, child->fd, 5000, 300, [](int n) { return MakeMessage(n, 2, 1000); });
}

// Runs the child test `filter` of this binary in a fresh process with
// `dir` as its spool, and returns the ids it reported as acknowledged
// before it killed itself with SIGKILL.
std::vector<MessageId> RunCrashChild(const fs::path& dir, const char* filter) {
  int fds[2];
  if (pipe(fds) != 0) {
    ADD_FAILURE() << "pipe";
    return {};
  }
  const pid_t pid = fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork";
    return {};
  }
  if (pid == 0) {
    // exec a fresh copy: forking a process with RocksDB's thread pools
    // alive and using RocksDB in the child is not safe.
    close(fds[0]);
    setenv("HIKYAKU_SPOOL_CRASH_DIR", dir.c_str(), 1);
    setenv("HIKYAKU_SPOOL_CRASH_FD", std::to_string(fds[1]).c_str(), 1);
    char self[4096];
    const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) _exit(2);
    self[len] = '\0';
    const std::string filter_arg = std::string("--gtest_filter=") + filter;
    execl(self, self, filter_arg.c_str(), static_cast<char*>(nullptr));
    _exit(2);
  }
  close(fds[1]);
  std::vector<MessageId> acked;
  uint64_t id;
  while (read(fds[0], &id, sizeof id) == sizeof id) acked.push_back(MessageId(id));
  close(fds[0]);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;
  return acked;
}

// Reopens the spool a crash child left and checks that every message it
// acknowledged (made by `make` from its serial) is stored, whole.
template <typename Make>
std::unique_ptr<Spool> ReopenWithEveryAcknowledged(const SpoolOptions& options, const std::vector<MessageId>& acked,
                                                   Make make) {
  auto spool = MustOpen(options);
  if (spool)
    for (MessageId m : acked) ExpectStored(*spool, make(SerialOf(m)));
  return spool;
}

TEST(RocksDbSpoolTest, CrashAfterAckKeepsAcknowledgedMail) {
  TempDir dir;
  std::vector<MessageId> acked = RunCrashChild(dir.path(), "RocksDbSpoolCrashChild.AppendThenDie");
  ASSERT_GE(acked.size(), 300u);

  auto spool = ReopenWithEveryAcknowledged(Options(dir.path()), acked,
                                           [](int n) { return MakeMessage(n, 2, 1000); });
  ASSERT_TRUE(spool);
  // Unacknowledged messages may or may not be present, but never torn: every
  // stored message has its meta, content and both recipients.
  std::map<MessageId, int> recipients;
  ASSERT_TRUE(spool->ForEachPending([&](const RecipientRecord& r) { ++recipients[r.message]; }));
  for (const auto& [m, count] : recipients) {
    EXPECT_EQ(count, 2) << m.ToString();
    EXPECT_TRUE(spool->ReadMessage(m)) << m.ToString();
  }
}


// Text of `size` characters that zstd cannot shrink much, so a few hundred
// messages fill a 1 MB memtable.
IncomingMessage MakeBulkyMessage(uint64_t n, size_t size) {
  IncomingMessage m = MakeMessage(n, 1, 0);
  std::mt19937_64 rng(n * 7919);
  m.content = "Subject: bulk " + std::to_string(n) + "\r\n\r\n";
  while (m.content.size() < size) m.content.push_back(static_cast<char>('!' + rng() % 90));
  return m;
}

constexpr uint64_t kRemovedFirst = 100'000;  // ids of the phase-1 messages
constexpr int kRemovedCount = 600;

SpoolOptions SmallMemtableOptions(const fs::path& dir) {
  SpoolOptions options = Options(dir);
  options.memtable_size = 1 << 20;  // a flush every ~150 messages; 1 MB journal segments, reused
  return options;
}

// The child half of CrashAfterRemovalsKeepsAcknowledgedMailOnly. Phase 1
// appends and then removes many messages, across several memtable switches
// (so some of them reached blob and table files before their removal);
// phase 2 appends, reports acknowledgements and dies with SIGKILL in the
// middle.
TEST(RocksDbSpoolCrashChild, RemoveThenAppendThenDie) {
  auto child = CrashChild();
  if (!child) GTEST_SKIP() << "only run as the child of the crash test";
  auto spool = OpenRocksDbSpool(SmallMemtableOptions(child->dir));
  if (!spool) _exit(3);
  for (int i = 0; i < kRemovedCount; ++i)
    if (!AppendAndWait(**spool, MakeBulkyMessage(kRemovedFirst + i, 8000))) _exit(5);
  for (int i = 0; i < kRemovedCount; ++i) {
    std::promise<Result<void>> removed;
    (*spool)->RemoveMessage(MakeMessage(kRemovedFirst + i, 0, 0).id, 1,
                            [&](Result<void> r) { removed.set_value(std::move(r)); });
    if (!removed.get_future().get()) _exit(6);
  }
  AppendReportAndDie(**spool, child->fd, 2000, 600, [](int n) { return MakeBulkyMessage(n, 8000); });
}

// After a crash every acknowledged message is back, whole, and no removed
// message comes back from records older than its removal.
TEST(RocksDbSpoolTest, CrashAfterRemovalsKeepsAcknowledgedMailOnly) {
  TempDir dir;
  std::vector<MessageId> acked = RunCrashChild(dir.path(), "RocksDbSpoolCrashChild.RemoveThenAppendThenDie");
  ASSERT_GE(acked.size(), 600u);

  auto spool = ReopenWithEveryAcknowledged(SmallMemtableOptions(dir.path()), acked,
                                           [](int n) { return MakeBulkyMessage(n, 8000); });
  ASSERT_TRUE(spool);
  std::set<MessageId> pending;
  ASSERT_TRUE(spool->ForEachPending([&](const RecipientRecord& r) {
    EXPECT_TRUE(pending.insert(r.message).second) << "two records for " << r.message.ToString();
  }));
  for (MessageId m : pending) {
    const int n = SerialOf(m);
    EXPECT_LT(n, static_cast<int>(kRemovedFirst)) << "removed message " << n << " came back";
    auto got = spool->ReadMessage(m);
    ASSERT_TRUE(got) << m.ToString() << ": " << got.error().ToString();
    EXPECT_EQ(got->content, MakeBulkyMessage(n, 8000).content);
  }
}

}  // namespace
}  // namespace hikyaku::spool
