/** Steam's `k_nSteamNetworkingSend_*` flags (bit values). */
export enum SendFlags {
  Unreliable = 0,
  NoNagle = 1,
  UnreliableNoNagle = 1,
  NoDelay = 4,
  UnreliableNoDelay = 5,
  Reliable = 8,
  ReliableNoNagle = 9,
  /** Transmit from the calling thread before returning (NoNagle and NoDelay do too). */
  UseCurrentThread = 16,
  AutoRestartBrokenSession = 32,
}

/** Steam's `ESteamNetworkingConnectionState`. */
export enum ConnectionState {
  None = 0,
  Connecting = 1,
  FindingRoute = 2,
  Connected = 3,
  ClosedByPeer = 4,
  ProblemDetectedLocally = 5,
  FinWait = -1,
  Linger = -2,
  Dead = -3,
}

/** The subset of Steam's `EResult` returned by this API (Steam's values). */
export enum EResult {
  OK = 1,
  Fail = 2,
  NoConnection = 3,
  InvalidParam = 8,
  InvalidState = 11,
  Timeout = 16,
  LimitExceeded = 25,
  DuplicateRequest = 29,
  ConnectFailed = 35,
  Ignored = 41,
}

/** Steam's `ESteamNetworkingIdentityType`. */
export enum IdentityType {
  Invalid = 0,
  IPAddress = 1,
  GenericString = 2,
  GenericBytes = 3,
  SteamID = 16,
}

/** Steam's `ESteamNetConnectionEnd` reason codes (ranges and the named values used here). */
export enum ConnectionEnd {
  Invalid = 0,
  App_Min = 1000,
  App_Generic = 1000,
  App_Max = 1999,
  AppException_Min = 2000,
  AppException_Generic = 2000,
  AppException_Max = 2999,
  Local_Min = 3000,
  Local_Max = 3999,
  Remote_Min = 4000,
  Remote_Timeout = 4001,
  Remote_BadCrypt = 4002,
  Remote_BadCert = 4003,
  Remote_BadProtocolVersion = 4006,
  Remote_Max = 4999,
  Misc_Min = 5000,
  Misc_Generic = 5001,
  Misc_InternalError = 5002,
  Misc_Timeout = 5003,
  Misc_PeerSentNoConnection = 5010,
  Misc_Max = 5999,
}
