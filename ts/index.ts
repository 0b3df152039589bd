/**
 * netmessages: Valve's ISteamNetworkingMessages model for Node.js, without Steam.
 * @packageDocumentation
 */
export { SendFlags, ConnectionState, EResult, IdentityType, ConnectionEnd, CONFIG_KEYS } from './generated';
export { Identity } from './identity';
export {
  generateKeyPair,
  publicKeyOf,
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
