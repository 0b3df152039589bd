/**
 * netmessages: Valve's ISteamNetworkingMessages model for Node.js, without Steam.
 * @packageDocumentation
 */
export { SendFlags, ConnectionState, EResult, IdentityType, ConnectionEnd, DebugOutputType, CONFIG_KEYS } from './generated';
export { Identity } from './identity';
export { MessageBatch } from './receive-batch';
export {
  setDebugOutputFunction,
  getDebugOutputLevel,
  parseDebugLevel,
  stderrDebugOutput,
  type DebugOutputFunction,
} from './debug-output';
export { NetmessagesError, type NetmessagesErrorCode, type SendProblem } from './errors';
export { toPrometheus, type EndpointStats, type SessionStats, type ChannelBacklog } from './stats';
export {
  generateKeyPair,
  publicKeyOf,
  keyIdOf,
  issueCertificate,
  type KeyPair,
  type CertificateRequest,
  type SecurityCreateOptions,
} from './security';
export {
  NetworkingMessages,
  type Config,
  type CreateOptions,
  type NetworkingMessage,
  type OutgoingMessage,
  type ConnectionInfo,
  type RealTimeStatus,
  type SessionConnectionInfo,
  type SessionListEntry,
  type ReceiveBlockedEvent,
  type NetworkingMessagesEvents,
} from './networking-messages';
export {
  WebSocketSignaling,
  type Signaling,
  type SignalingState,
  type TurnServer,
  type P2pCreateOptions,
  type P2pStringConfig,
} from './p2p';
export {
  NetworkingSockets,
  type SocketsCreateOptions,
  type ListenOptions,
  type ConnectOptions,
  type SocketConnectionInfo,
  type ConnectionRealTimeStatus,
  type ConnectionStatusChanged,
  type OutgoingConnectionMessage,
  type SendResult,
  type NetworkingSocketsEvents,
  type NetworkingConnectionMessage,
} from './networking-sockets';
