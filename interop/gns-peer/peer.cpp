// gns-peer: a small program on Valve's GameNetworkingSockets (GNS) public API, driven by
// line-delimited JSON commands on stdin and reporting JSON events on stdout, one per line.
// The interop tests (interop/gns-peer.mjs drives it) use it as a stock GNS peer of netmessages.
//
// It uses only the public headers: ISteamNetworkingSockets (listen sockets, ConnectByIPAddress,
// poll groups, lanes, SendMessages), ISteamNetworkingUtils (config values by name, the debug
// output hook). In "messages" mode it adds and strips the 5-byte header that GNS's
// ISteamNetworkingMessages layer puts in front of each message (u8 flags, i32 LE channel), so a
// netmessages endpoint can talk to it; in "raw" mode payloads are sent as they are.
//
// Protocol (docs/INTEROP.md lists every command and event): each command is an object with
// "cmd" and an optional "id" that the events it causes carry back. Events have "ev" and "t"
// (ms since start).
#include <steam/isteamnetworkingsockets.h>
#include <steam/isteamnetworkingutils.h>
#include <steam/steamnetworkingsockets.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unistd.h>
#include <tuple>
#include <vector>

using json = nlohmann::json;

namespace {

// ------------------------------------------------------------------ output

std::mutex g_outLock;
const auto g_start = std::chrono::steady_clock::now();

double nowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - g_start).count();
}

void emit(json j) {
  j["t"] = nowMs();
  std::string line = j.dump(-1, ' ', false, json::error_handler_t::replace);
  std::lock_guard<std::mutex> lock(g_outLock);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

void emitError(const json &id, const std::string &cmd, const std::string &msg) {
  json j = {{"ev", "error"}, {"cmd", cmd}, {"msg", msg}};
  if (!id.is_null()) j["id"] = id;
  emit(j);
}

// GNS calls this from its own service thread as well as ours.
void debugOutput(ESteamNetworkingSocketsDebugOutputType level, const char *msg) {
  std::string s(msg);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  emit({{"ev", "log"}, {"level", static_cast<int>(level)}, {"msg", s}});
}

// ------------------------------------------------------------------ payload pattern
// Message bodies made by "send" with a size are a pattern the receiver can check without
// being told what was sent: bytes 0..3 the sequence number (LE), 4..7 a seed (LE), the rest a
// function of both and of the position. interop/gns-peer.mjs has the same two functions.

inline uint8_t patternByte(uint32_t seq, uint32_t seed, uint32_t k) {
  uint32_t x = seed * 2654435761u + seq * 40503u + k * 2246822519u;
  x ^= x >> 15;
  return static_cast<uint8_t>(x);
}

void fillPattern(uint8_t *p, uint32_t n, uint32_t seq, uint32_t seed) {
  for (uint32_t k = 0; k < n; k++) p[k] = patternByte(seq, seed, k);
  if (n >= 4) std::memcpy(p, &seq, 4);  // little-endian hosts only (x86-64, arm64)
  if (n >= 8) std::memcpy(p + 4, &seed, 4);
}

// True when the body is intact. Bodies of fewer than 8 bytes carry no seq/seed: they are
// checked against seq = seed = 0.
bool checkPattern(const uint8_t *p, uint32_t n, uint32_t *seqOut, uint32_t *seedOut) {
  uint32_t seq = 0, seed = 0;
  if (n >= 8) {
    std::memcpy(&seq, p, 4);
    std::memcpy(&seed, p + 4, 4);
  }
  *seqOut = seq;
  *seedOut = seed;
  for (uint32_t k = n >= 8 ? 8 : 0; k < n; k++) {
    if (p[k] != patternByte(seq, seed, k)) return false;
  }
  return true;
}

uint32_t fnv1a(const uint8_t *p, uint32_t n) {
  uint32_t h = 2166136261u;
  for (uint32_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 16777619u;
  }
  return h;
}

std::string base64(const uint8_t *p, size_t n) {
  static const char *tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = static_cast<uint32_t>(p[i]) << 16;
    if (i + 1 < n) v |= static_cast<uint32_t>(p[i + 1]) << 8;
    if (i + 2 < n) v |= p[i + 2];
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += i + 1 < n ? tbl[(v >> 6) & 63] : '=';
    out += i + 2 < n ? tbl[v & 63] : '=';
  }
  return out;
}

bool unbase64(const std::string &s, std::vector<uint8_t> &out) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  out.clear();
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    if (c == '=') break;
    int v = val(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>(acc >> bits));
    }
  }
  return true;
}

// ------------------------------------------------------------------ state

ISteamNetworkingSockets *g_sockets = nullptr;
ISteamNetworkingUtils *g_utils = nullptr;
HSteamNetPollGroup g_poll = k_HSteamNetPollGroup_Invalid;
bool g_messagesMode = true;      // add/strip the messages layer's header
uint8_t g_hdrFlags = 1;          // what GNS's messages layer writes
bool g_autoAccept = true;        // accept connections on our listen sockets
bool g_autoClose = true;         // CloseConnection once the peer or a problem ended one
bool g_echo = false;             // send each received message back
bool g_recvEvents = true;        // one "msg" event per message (else only counters)
int g_maxInline = 256;           // bodies up to this size are put in "msg" events (base64)
std::atomic<bool> g_quit{false};
std::map<std::string, ESteamNetworkingConfigValue> g_configNames;

// Per (connection, channel, lane) receive counters.
struct Counter {
  uint64_t msgs = 0, bytes = 0, bad = 0, reliable = 0, outOfOrder = 0;
  int64_t lastReliableSeq = -1;
  double firstMs = -1, lastMs = -1;
};
std::map<std::tuple<HSteamNetConnection, int, int>, Counter> g_counters;

// A bulk send in progress ("stream"): keeps the connection's send queue topped up.
struct Stream {
  json id;
  HSteamNetConnection conn = k_HSteamNetConnection_Invalid;
  uint64_t total = 0, queued = 0;
  uint32_t size = 1200, seed = 0, seq = 0;
  int flags = k_nSteamNetworkingSend_Reliable, channel = 0, lane = 0;
  int64_t maxPending = 0;
  double startMs = 0;
};
std::vector<Stream> g_streams;

// A message sent every `everyMs` ("pump"): traffic that makes either side notice a dead peer.
struct Pump {
  HSteamNetConnection conn = k_HSteamNetConnection_Invalid;
  double everyMs = 100, nextMs = 0;
  uint32_t size = 100, seed = 0, seq = 0;
  int flags = k_nSteamNetworkingSend_Reliable, channel = 0;
};
std::vector<Pump> g_pumps;

// ------------------------------------------------------------------ config by name

void loadConfigNames() {
  for (int v = 1; v < 1100; v++) {
    ESteamNetworkingConfigDataType type;
    ESteamNetworkingConfigScope scope;
    const char *name = g_utils->GetConfigValueInfo(static_cast<ESteamNetworkingConfigValue>(v), &type, &scope);
    if (name != nullptr) g_configNames[name] = static_cast<ESteamNetworkingConfigValue>(v);
  }
}

// Turns {"Name": value} into config options; false (with a message) for an unknown name or a
// value of the wrong type.
bool configOptions(const json &cfg, std::vector<SteamNetworkingConfigValue_t> &out, std::vector<std::string> &strings,
                   std::string &err) {
  if (cfg.is_null()) return true;
  if (!cfg.is_object()) {
    err = "config must be an object";
    return false;
  }
  strings.reserve(cfg.size());
  for (auto it = cfg.begin(); it != cfg.end(); ++it) {
    auto found = g_configNames.find(it.key());
    if (found == g_configNames.end()) {
      err = "unknown config value " + it.key();
      return false;
    }
    ESteamNetworkingConfigDataType type;
    g_utils->GetConfigValueInfo(found->second, &type, nullptr);
    SteamNetworkingConfigValue_t opt;
    const json &v = it.value();
    switch (type) {
      case k_ESteamNetworkingConfig_Int32:
        if (!v.is_number()) { err = it.key() + " needs a number"; return false; }
        opt.SetInt32(found->second, v.get<int32_t>());
        break;
      case k_ESteamNetworkingConfig_Int64:
        if (!v.is_number()) { err = it.key() + " needs a number"; return false; }
        opt.SetInt64(found->second, v.get<int64_t>());
        break;
      case k_ESteamNetworkingConfig_Float:
        if (!v.is_number()) { err = it.key() + " needs a number"; return false; }
        opt.SetFloat(found->second, v.get<float>());
        break;
      case k_ESteamNetworkingConfig_String:
        if (!v.is_string()) { err = it.key() + " needs a string"; return false; }
        strings.push_back(v.get<std::string>());
        opt.SetString(found->second, strings.back().c_str());
        break;
      default:
        err = it.key() + " has a type this peer cannot set";
        return false;
    }
    out.push_back(opt);
  }
  return true;
}

bool applyConfig(const json &cfg, ESteamNetworkingConfigScope scope, intptr_t obj, std::string &err) {
  std::vector<SteamNetworkingConfigValue_t> opts;
  std::vector<std::string> strings;
  if (!configOptions(cfg, opts, strings, err)) return false;
  for (auto &o : opts) {
    const void *arg = nullptr;
    switch (o.m_eDataType) {
      case k_ESteamNetworkingConfig_Int32: arg = &o.m_val.m_int32; break;
      case k_ESteamNetworkingConfig_Int64: arg = &o.m_val.m_int64; break;
      case k_ESteamNetworkingConfig_Float: arg = &o.m_val.m_float; break;
      case k_ESteamNetworkingConfig_String: arg = o.m_val.m_string; break;
      default: break;
    }
    if (!g_utils->SetConfigValue(o.m_eValue, scope, obj, o.m_eDataType, arg)) {
      err = std::string("SetConfigValue refused ") + g_utils->GetConfigValueInfo(o.m_eValue, nullptr, nullptr);
      return false;
    }
  }
  return true;
}

// ------------------------------------------------------------------ reports

std::string identityText(const SteamNetworkingIdentity &id) {
  char buf[SteamNetworkingIdentity::k_cchMaxString];
  id.ToString(buf, sizeof(buf));
  return buf;
}

std::string addrText(const SteamNetworkingIPAddr &a) {
  char buf[SteamNetworkingIPAddr::k_cchMaxString];
  a.ToString(buf, sizeof(buf), true);
  return buf;
}

json infoJson(const SteamNetConnectionInfo_t &info) {
  return {{"state", static_cast<int>(info.m_eState)},
          {"end", info.m_eEndReason},
          {"debug", info.m_szEndDebug},
          {"desc", info.m_szConnectionDescription},
          {"identity", identityText(info.m_identityRemote)},
          {"addr", addrText(info.m_addrRemote)},
          {"listen", info.m_hListenSocket},
          {"flags", info.m_nFlags}};
}

void onStatusChanged(SteamNetConnectionStatusChangedCallback_t *cb) {
  json j = infoJson(cb->m_info);
  j["ev"] = "status";
  j["conn"] = cb->m_hConn;
  j["old"] = static_cast<int>(cb->m_eOldState);
  emit(j);
  const auto state = cb->m_info.m_eState;
  if (state == k_ESteamNetworkingConnectionState_Connecting && cb->m_info.m_hListenSocket != k_HSteamListenSocket_Invalid &&
      g_autoAccept) {
    EResult r = g_sockets->AcceptConnection(cb->m_hConn);
    g_sockets->SetConnectionPollGroup(cb->m_hConn, g_poll);
    emit({{"ev", "accepted"}, {"conn", cb->m_hConn}, {"result", static_cast<int>(r)}});
  } else if ((state == k_ESteamNetworkingConnectionState_ClosedByPeer ||
              state == k_ESteamNetworkingConnectionState_ProblemDetectedLocally) &&
             g_autoClose) {
    g_sockets->CloseConnection(cb->m_hConn, 0, nullptr, false);
  }
}

json statusJson(HSteamNetConnection conn, int nLanes, bool detail) {
  SteamNetConnectionRealTimeStatus_t st;
  std::vector<SteamNetConnectionRealTimeLaneStatus_t> lanes(static_cast<size_t>(nLanes));
  EResult r = g_sockets->GetConnectionRealTimeStatus(conn, &st, nLanes, nLanes > 0 ? lanes.data() : nullptr);
  json j = {{"ev", "stats"}, {"conn", conn}, {"result", static_cast<int>(r)}};
  SteamNetConnectionInfo_t info;
  if (g_sockets->GetConnectionInfo(conn, &info)) j["info"] = infoJson(info);
  if (r == k_EResultOK) {
    j["state"] = static_cast<int>(st.m_eState);
    j["ping"] = st.m_nPing;
    j["qualityLocal"] = st.m_flConnectionQualityLocal;
    j["qualityRemote"] = st.m_flConnectionQualityRemote;
    j["outPacketsPerSec"] = st.m_flOutPacketsPerSec;
    j["outBytesPerSec"] = st.m_flOutBytesPerSec;
    j["inPacketsPerSec"] = st.m_flInPacketsPerSec;
    j["inBytesPerSec"] = st.m_flInBytesPerSec;
    j["sendRate"] = st.m_nSendRateBytesPerSecond;
    j["pendingUnreliable"] = st.m_cbPendingUnreliable;
    j["pendingReliable"] = st.m_cbPendingReliable;
    j["sentUnackedReliable"] = st.m_cbSentUnackedReliable;
    j["queueTime"] = st.m_usecQueueTime;
    json lj = json::array();
    for (auto &l : lanes) {
      lj.push_back({{"pendingUnreliable", l.m_cbPendingUnreliable},
                    {"pendingReliable", l.m_cbPendingReliable},
                    {"sentUnackedReliable", l.m_cbSentUnackedReliable},
                    {"queueTime", l.m_usecQueueTime}});
    }
    j["lanes"] = lj;
  }
  if (detail) {
    std::vector<char> buf(16384);
    int n = g_sockets->GetDetailedConnectionStatus(conn, buf.data(), static_cast<int>(buf.size()));
    if (n >= 0) j["detail"] = std::string(buf.data());
  }
  return j;
}

json countersJson(bool reset) {
  json arr = json::array();
  for (auto &[key, c] : g_counters) {
    arr.push_back({{"conn", std::get<0>(key)},
                   {"ch", std::get<1>(key)},
                   {"lane", std::get<2>(key)},
                   {"msgs", c.msgs},
                   {"bytes", c.bytes},
                   {"bad", c.bad},
                   {"reliable", c.reliable},
                   {"outOfOrder", c.outOfOrder},
                   {"firstMs", c.firstMs},
                   {"lastMs", c.lastMs}});
  }
  if (reset) g_counters.clear();
  return {{"ev", "counters"}, {"counters", arr}};
}

// ------------------------------------------------------------------ sending

// Makes one message for `conn`; in messages mode with the header in front of the body.
SteamNetworkingMessage_t *makeMessage(HSteamNetConnection conn, const uint8_t *body, uint32_t n, int flags, int channel,
                                      int lane) {
  const uint32_t hdr = g_messagesMode ? 5 : 0;
  SteamNetworkingMessage_t *m = g_utils->AllocateMessage(static_cast<int>(n + hdr));
  auto *p = static_cast<uint8_t *>(m->m_pData);
  if (hdr > 0) {
    p[0] = g_hdrFlags;
    int32_t ch = channel;
    std::memcpy(p + 1, &ch, 4);
  }
  if (n > 0) std::memcpy(p + hdr, body, n);
  m->m_conn = conn;
  m->m_nFlags = flags;
  m->m_idxLane = static_cast<uint16_t>(lane);
  return m;
}

void cmdSend(const json &c, const json &id) {
  const HSteamNetConnection conn = c.value("conn", 0u);
  const int flags = c.value("flags", k_nSteamNetworkingSend_Reliable);
  const int channel = c.value("channel", 0);
  const int lane = c.value("lane", 0);
  const uint32_t count = c.value("count", 1u);
  uint32_t seq = c.value("seq", 0u);
  const uint32_t seed = c.value("seed", 0u);
  std::vector<uint8_t> fixed;
  bool hasData = c.contains("data");
  if (hasData && !unbase64(c["data"].get<std::string>(), fixed)) return emitError(id, "send", "data is not base64");
  if (c.contains("text")) {
    std::string t = c["text"].get<std::string>();
    fixed.assign(t.begin(), t.end());
    hasData = true;
  }
  const uint32_t size = hasData ? static_cast<uint32_t>(fixed.size()) : c.value("size", 0u);
  std::vector<uint8_t> body(size);
  std::vector<SteamNetworkingMessage_t *> msgs;
  msgs.reserve(count);
  for (uint32_t i = 0; i < count; i++, seq++) {
    if (hasData) body = fixed;
    else fillPattern(body.data(), size, seq, seed);
    msgs.push_back(makeMessage(conn, body.data(), size, flags, channel, lane));
  }
  std::vector<int64> results(count);
  g_sockets->SendMessages(static_cast<int>(count), msgs.data(), results.data(), true);
  json j = {{"ev", "sent"}, {"conn", conn}, {"count", count}};
  if (!id.is_null()) j["id"] = id;
  uint32_t ok = 0;
  json failures = json::array();
  for (uint32_t i = 0; i < count; i++) {
    if (results[i] > 0) {
      ok++;
      if (!j.contains("first")) j["first"] = results[i];
      j["last"] = results[i];
    } else if (failures.size() < 8) {
      failures.push_back({{"index", i}, {"result", -results[i]}});
    }
  }
  j["ok"] = ok;
  j["failures"] = failures;
  emit(j);
}

void pumpStreams() {
  for (auto it = g_streams.begin(); it != g_streams.end();) {
    Stream &s = *it;
    SteamNetConnectionRealTimeStatus_t st;
    if (g_sockets->GetConnectionRealTimeStatus(s.conn, &st, 0, nullptr) != k_EResultOK) {
      json j = {{"ev", "streamDone"}, {"conn", s.conn}, {"queued", s.queued}, {"error", "connection gone"}};
      if (!s.id.is_null()) j["id"] = s.id;
      emit(j);
      it = g_streams.erase(it);
      continue;
    }
    int64_t pending = st.m_cbPendingReliable + st.m_cbPendingUnreliable;
    std::vector<SteamNetworkingMessage_t *> batch;
    std::vector<uint8_t> body(s.size);
    while (s.queued < s.total && pending < s.maxPending && batch.size() < 4096) {
      fillPattern(body.data(), s.size, s.seq++, s.seed);
      batch.push_back(makeMessage(s.conn, body.data(), s.size, s.flags, s.channel, s.lane));
      s.queued += s.size;
      pending += s.size;
    }
    if (!batch.empty()) {
      std::vector<int64> results(batch.size());
      g_sockets->SendMessages(static_cast<int>(batch.size()), batch.data(), results.data(), true);
      for (size_t i = 0; i < batch.size(); i++) {
        if (results[i] < 0) {
          // A refused message is re-queued by rewinding: the stream stays gap-free.
          const uint64_t back = (batch.size() - i) * s.size;
          s.queued -= back;
          s.seq -= static_cast<uint32_t>(batch.size() - i);
          break;
        }
      }
    }
    if (s.queued >= s.total) {
      json j = {{"ev", "streamDone"}, {"conn", s.conn}, {"queued", s.queued}, {"ms", nowMs() - s.startMs}};
      if (!s.id.is_null()) j["id"] = s.id;
      emit(j);
      it = g_streams.erase(it);
      continue;
    }
    ++it;
  }
}

void runPumps() {
  const double now = nowMs();
  for (auto it = g_pumps.begin(); it != g_pumps.end();) {
    if (now < it->nextMs) {
      ++it;
      continue;
    }
    it->nextMs = now + it->everyMs;
    std::vector<uint8_t> body(it->size);
    fillPattern(body.data(), it->size, it->seq++, it->seed);
    SteamNetworkingMessage_t *m = makeMessage(it->conn, body.data(), it->size, it->flags, it->channel, 0);
    int64 r;
    g_sockets->SendMessages(1, &m, &r, true);
    if (r == -k_EResultNoConnection || r == -k_EResultInvalidParam) {
      // The connection is gone: the pump stops.
      emit({{"ev", "pumpStopped"}, {"conn", it->conn}, {"result", -r}});
      it = g_pumps.erase(it);
      continue;
    }
    ++it;
  }
}

// ------------------------------------------------------------------ receiving

void onMessage(SteamNetworkingMessage_t *m) {
  const auto *p = static_cast<const uint8_t *>(m->m_pData);
  uint32_t n = static_cast<uint32_t>(m->m_cbSize);
  int channel = -1, hdrFlags = -1;
  bool shortMsg = false;
  if (g_messagesMode) {
    if (n < 5) {
      shortMsg = true;
    } else {
      hdrFlags = p[0];
      int32_t ch;
      std::memcpy(&ch, p + 1, 4);
      channel = ch;
      p += 5;
      n -= 5;
    }
  }
  const bool reliable = (m->m_nFlags & k_nSteamNetworkingSend_Reliable) != 0;
  uint32_t seq = 0, seed = 0;
  const bool ok = !shortMsg && checkPattern(p, n, &seq, &seed);
  Counter &c = g_counters[{m->m_conn, channel, m->m_idxLane}];
  const double t = nowMs();
  if (c.firstMs < 0) c.firstMs = t;
  c.lastMs = t;
  c.msgs++;
  c.bytes += n;
  if (!ok) c.bad++;
  if (reliable) {
    c.reliable++;
    if (n >= 8 && c.lastReliableSeq >= 0 && static_cast<int64_t>(seq) != c.lastReliableSeq + 1) c.outOfOrder++;
    if (n >= 8) c.lastReliableSeq = seq;
  }
  if (g_recvEvents) {
    json j = {{"ev", "msg"},     {"conn", m->m_conn}, {"lane", m->m_idxLane}, {"size", n},
              {"num", m->m_nMessageNumber}, {"reliable", reliable}, {"ok", ok},
              {"seq", seq},     {"seed", seed},      {"hash", fnv1a(p, n)}};
    if (g_messagesMode) {
      j["ch"] = channel;
      j["hdrFlags"] = hdrFlags;
      if (shortMsg) j["short"] = true;
    }
    if (static_cast<int>(n) <= g_maxInline) j["data"] = base64(p, n);
    emit(j);
  }
  if (g_echo && !shortMsg) {
    SteamNetworkingMessage_t *e = makeMessage(m->m_conn, p, n, reliable ? k_nSteamNetworkingSend_Reliable : 0,
                                              channel < 0 ? 0 : channel, m->m_idxLane);
    int64 r;
    g_sockets->SendMessages(1, &e, &r, true);
  }
}

// Returns how many messages were taken.
int receiveAll() {
  SteamNetworkingMessage_t *msgs[256];
  int total = 0;
  for (;;) {
    int n = g_sockets->ReceiveMessagesOnPollGroup(g_poll, msgs, 256);
    if (n <= 0) break;
    total += n;
    for (int i = 0; i < n; i++) {
      onMessage(msgs[i]);
      msgs[i]->Release();
    }
    if (n < 256) break;
  }
  return total;
}

// ------------------------------------------------------------------ commands

bool parseAddr(const json &c, const char *key, SteamNetworkingIPAddr &addr) {
  if (!c.contains(key) || !c[key].is_string()) return false;
  addr.Clear();
  return addr.ParseString(c[key].get<std::string>().c_str());
}

bool g_initialized = false;

void cmdInit(const json &c, const json &id) {
  if (g_initialized) return emitError(id, "init", "already initialized");
  g_messagesMode = c.value("mode", std::string("messages")) == "messages";
  g_hdrFlags = static_cast<uint8_t>(c.value("hdrFlags", 1));
  g_autoAccept = c.value("autoAccept", true);
  g_autoClose = c.value("autoClose", true);
  g_recvEvents = c.value("recvEvents", true);
  g_maxInline = c.value("maxInline", 256);
  g_utils = SteamNetworkingUtils();
  const int logLevel = c.value("logLevel", static_cast<int>(k_ESteamNetworkingSocketsDebugOutputType_Msg));
  g_utils->SetDebugOutputFunction(static_cast<ESteamNetworkingSocketsDebugOutputType>(logLevel), debugOutput);
  SteamNetworkingIdentity identity;
  identity.Clear();
  const bool hasIdentity = c.contains("identity") && c["identity"].is_string();
  if (hasIdentity && !identity.ParseString(c["identity"].get<std::string>().c_str())) {
    return emitError(id, "init", "bad identity");
  }
  SteamNetworkingErrMsg err;
  if (!GameNetworkingSockets_Init(hasIdentity ? &identity : nullptr, err)) return emitError(id, "init", err);
  g_initialized = true;
  g_sockets = SteamNetworkingSockets();
  loadConfigNames();
  g_utils->SetGlobalCallback_SteamNetConnectionStatusChanged(onStatusChanged);
  std::string msg;
  if (g_messagesMode) {
    // GNS's messages layer lets its connections receive a full-size message plus its header.
    applyConfig({{"RecvMaxMessageSize", k_cbMaxSteamNetworkingSocketsMessageSizeSend + 16}}, k_ESteamNetworkingConfig_Global, 0, msg);
  }
  if (!applyConfig(c.value("global", json()), k_ESteamNetworkingConfig_Global, 0, msg)) return emitError(id, "init", msg);
  g_poll = g_sockets->CreatePollGroup();
  SteamNetworkingIdentity mine;
  json j = {{"ev", "ready"}, {"mode", g_messagesMode ? "messages" : "raw"}};
  if (g_sockets->GetIdentity(&mine)) j["identity"] = identityText(mine);
  if (!id.is_null()) j["id"] = id;
  emit(j);
}

void handle(const json &c) {
  const json id = c.contains("id") ? c["id"] : json();
  const std::string cmd = c.value("cmd", std::string());
  if (cmd == "init") return cmdInit(c, id);
  if (cmd == "quit") {
    g_quit = true;
    return;
  }
  if (!g_initialized) return emitError(id, cmd, "send init first");
  std::string err;
  auto reply = [&](json j) {
    if (!id.is_null()) j["id"] = id;
    emit(j);
  };
  if (cmd == "listen") {
    SteamNetworkingIPAddr addr;
    if (!parseAddr(c, "addr", addr)) return emitError(id, cmd, "addr must be 'host:port'");
    std::vector<SteamNetworkingConfigValue_t> opts;
    std::vector<std::string> strings;
    if (!configOptions(c.value("config", json()), opts, strings, err)) return emitError(id, cmd, err);
    HSteamListenSocket s = g_sockets->CreateListenSocketIP(addr, static_cast<int>(opts.size()), opts.data());
    if (s == k_HSteamListenSocket_Invalid) return emitError(id, cmd, "CreateListenSocketIP failed (see the log)");
    SteamNetworkingIPAddr bound;
    g_sockets->GetListenSocketAddress(s, &bound);
    reply({{"ev", "listening"}, {"socket", s}, {"addr", addrText(bound)}, {"port", bound.m_port}});
  } else if (cmd == "connect") {
    SteamNetworkingIPAddr addr;
    if (!parseAddr(c, "addr", addr)) return emitError(id, cmd, "addr must be 'host:port'");
    std::vector<SteamNetworkingConfigValue_t> opts;
    std::vector<std::string> strings;
    if (!configOptions(c.value("config", json()), opts, strings, err)) return emitError(id, cmd, err);
    HSteamNetConnection conn = g_sockets->ConnectByIPAddress(addr, static_cast<int>(opts.size()), opts.data());
    if (conn == k_HSteamNetConnection_Invalid) return emitError(id, cmd, "ConnectByIPAddress failed (see the log)");
    g_sockets->SetConnectionPollGroup(conn, g_poll);
    reply({{"ev", "connecting"}, {"conn", conn}});
  } else if (cmd == "accept") {
    EResult r = g_sockets->AcceptConnection(c.value("conn", 0u));
    g_sockets->SetConnectionPollGroup(c.value("conn", 0u), g_poll);
    reply({{"ev", "accepted"}, {"conn", c.value("conn", 0u)}, {"result", static_cast<int>(r)}});
  } else if (cmd == "send") {
    cmdSend(c, id);
  } else if (cmd == "stream") {
    Stream s;
    s.id = id;
    s.conn = c.value("conn", 0u);
    s.total = c.value("bytes", static_cast<uint64_t>(0));
    s.size = c.value("size", 1200u);
    s.flags = c.value("flags", k_nSteamNetworkingSend_Reliable);
    s.channel = c.value("channel", 0);
    s.lane = c.value("lane", 0);
    s.seed = c.value("seed", 0u);
    s.seq = c.value("seq", 0u);
    s.maxPending = c.value("maxPending", static_cast<int64_t>(400000));
    s.startMs = nowMs();
    if (s.size == 0) return emitError(id, cmd, "size must be > 0");
    g_streams.push_back(s);
  } else if (cmd == "pump") {
    Pump p;
    p.conn = c.value("conn", 0u);
    p.everyMs = c.value("everyMs", 100.0);
    p.size = c.value("size", 100u);
    p.seed = c.value("seed", 0u);
    p.flags = c.value("flags", k_nSteamNetworkingSend_Reliable);
    p.channel = c.value("channel", 0);
    p.nextMs = nowMs();
    if (c.value("stop", false)) {
      for (auto it = g_pumps.begin(); it != g_pumps.end();) it = it->conn == p.conn ? g_pumps.erase(it) : std::next(it);
    } else {
      g_pumps.push_back(p);
    }
    reply({{"ev", "pumping"}, {"conn", p.conn}});
  } else if (cmd == "close") {
    bool r = g_sockets->CloseConnection(c.value("conn", 0u), c.value("reason", 0), c.value("debug", std::string()).c_str(),
                                        c.value("linger", false));
    reply({{"ev", "closed"}, {"conn", c.value("conn", 0u)}, {"result", r}});
  } else if (cmd == "closeListen") {
    bool r = g_sockets->CloseListenSocket(c.value("socket", 0u));
    reply({{"ev", "closedListen"}, {"result", r}});
  } else if (cmd == "lanes") {
    const HSteamNetConnection conn = c.value("conn", 0u);
    std::vector<int> prio = c.value("priorities", std::vector<int>());
    std::vector<uint16> weights;
    for (int w : c.value("weights", std::vector<int>())) weights.push_back(static_cast<uint16>(w));
    if (weights.size() != prio.size()) return emitError(id, cmd, "priorities and weights differ in length");
    EResult r = g_sockets->ConfigureConnectionLanes(conn, static_cast<int>(prio.size()), prio.data(), weights.data());
    reply({{"ev", "lanes"}, {"conn", conn}, {"result", static_cast<int>(r)}});
  } else if (cmd == "setConfig") {
    const bool global = !c.contains("conn");
    if (!applyConfig(c.value("config", json()), global ? k_ESteamNetworkingConfig_Global : k_ESteamNetworkingConfig_Connection,
                     global ? 0 : static_cast<intptr_t>(c.value("conn", 0u)), err)) {
      return emitError(id, cmd, err);
    }
    reply({{"ev", "configSet"}});
  } else if (cmd == "getConfig") {
    // Reports int32 values only: what the tests compare.
    json out = json::object();
    for (auto &name : c.value("names", std::vector<std::string>())) {
      auto found = g_configNames.find(name);
      if (found == g_configNames.end()) continue;
      int32_t v = 0;
      size_t cb = sizeof(v);
      ESteamNetworkingConfigDataType type;
      const bool global = !c.contains("conn");
      auto r = g_utils->GetConfigValue(found->second, global ? k_ESteamNetworkingConfig_Global : k_ESteamNetworkingConfig_Connection,
                                       global ? 0 : static_cast<intptr_t>(c.value("conn", 0u)), &type, &v, &cb);
      if (r >= 0 && type == k_ESteamNetworkingConfig_Int32) out[name] = v;
    }
    reply({{"ev", "config"}, {"values", out}});
  } else if (cmd == "status") {
    reply(statusJson(c.value("conn", 0u), c.value("lanes", 0), c.value("detail", false)));
  } else if (cmd == "counters") {
    reply(countersJson(c.value("reset", false)));
  } else if (cmd == "echo") {
    g_echo = c.value("on", true);
    reply({{"ev", "echo"}, {"on", g_echo}});
  } else if (cmd == "recvEvents") {
    g_recvEvents = c.value("on", true);
    reply({{"ev", "recvEvents"}, {"on", g_recvEvents}});
  } else if (cmd == "flush") {
    EResult r = g_sockets->FlushMessagesOnConnection(c.value("conn", 0u));
    reply({{"ev", "flushed"}, {"result", static_cast<int>(r)}});
  } else if (cmd == "ping") {
    reply({{"ev", "pong"}});
  } else {
    emitError(id, cmd, "unknown command");
  }
}

// ------------------------------------------------------------------ main loop

std::mutex g_inLock;
std::deque<std::string> g_inbox;

void readStdin() {
  std::string line;
  while (std::getline(std::cin, line)) {
    std::lock_guard<std::mutex> lock(g_inLock);
    g_inbox.push_back(line);
  }
  // The driver is gone: leave as if told to.
  std::lock_guard<std::mutex> lock(g_inLock);
  g_inbox.push_back("{\"cmd\":\"quit\"}");
}

}  // namespace

int main() {
  std::signal(SIGPIPE, SIG_IGN);
  std::thread reader(readStdin);
  reader.detach();
  emit({{"ev", "hello"}, {"pid", static_cast<int>(getpid())}});
  while (!g_quit) {
    std::deque<std::string> lines;
    {
      std::lock_guard<std::mutex> lock(g_inLock);
      lines.swap(g_inbox);
    }
    for (auto &line : lines) {
      if (line.empty()) continue;
      json c = json::parse(line, nullptr, false);
      if (c.is_discarded() || !c.is_object()) {
        emitError(json(), "?", "not a JSON object: " + line.substr(0, 200));
        continue;
      }
      try {
        handle(c);
      } catch (const std::exception &e) {
        emitError(c.contains("id") ? c["id"] : json(), c.value("cmd", std::string("?")), e.what());
      }
    }
    bool busy = !g_streams.empty();
    if (g_initialized) {
      g_sockets->RunCallbacks();
      busy = receiveAll() > 0 || busy;
      pumpStreams();
      runPumps();
    }
    // Poll often while data flows (GNS queues at most RecvBufferMessages per connection).
    std::this_thread::sleep_for(std::chrono::microseconds(busy ? 100 : 1000));
  }
  if (g_initialized) {
    GameNetworkingSockets_Kill();
  }
  emit({{"ev", "bye"}});
  return 0;
}
