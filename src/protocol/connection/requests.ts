/**
 * The type-specific parts of channel opens, channel requests and global requests
 * (RFC 4254 §6–7, OpenSSH PROTOCOL §2). Each `encodeX` builds the bytes that follow the
 * request name / channel header; each `decodeX` parses them and throws WireError when malformed.
 * Requests without data (shell, auth-agent-req@openssh.com, eow@openssh.com,
 * keepalive@openssh.com, no-more-sessions@openssh.com, session opens) carry an empty string.
 */
import { SshReader } from "../wire/reader.js"
import { message } from "../wire/writer.js"
import { decodeTerminalModes, encodeTerminalModes, type TerminalModes } from "./terminal-modes.js"

export { decodeTerminalModes, encodeTerminalModes, TerminalMode } from "./terminal-modes.js"
export type { TerminalModeName, TerminalModes } from "./terminal-modes.js"

export const ChannelType = {
  session: "session",
  directTcpip: "direct-tcpip",
  forwardedTcpip: "forwarded-tcpip",
  x11: "x11",
  directStreamlocal: "direct-streamlocal@openssh.com",
  forwardedStreamlocal: "forwarded-streamlocal@openssh.com"
} as const

export const ChannelRequestType = {
  ptyReq: "pty-req",
  x11Req: "x11-req",
  env: "env",
  shell: "shell",
  exec: "exec",
  subsystem: "subsystem",
  windowChange: "window-change",
  xonXoff: "xon-xoff",
  signal: "signal",
  exitStatus: "exit-status",
  exitSignal: "exit-signal",
  authAgent: "auth-agent-req@openssh.com",
  eow: "eow@openssh.com",
  keepalive: "keepalive@openssh.com"
} as const

export const GlobalRequestType = {
  tcpipForward: "tcpip-forward",
  cancelTcpipForward: "cancel-tcpip-forward",
  streamlocalForward: "streamlocal-forward@openssh.com",
  cancelStreamlocalForward: "cancel-streamlocal-forward@openssh.com",
  keepalive: "keepalive@openssh.com",
  noMoreSessions: "no-more-sessions@openssh.com"
} as const

/** SSH_EXTENDED_DATA_* codes (RFC 4254 §5.2). */
export const ExtendedDataType = { STDERR: 1 } as const

function read<T>(data: Uint8Array, parse: (r: SshReader) => T): T {
  const r = new SshReader(data)
  const value = parse(r)
  r.end()
  return value
}

// ---- channel requests ----

export interface PtyRequest {
  /** The TERM environment variable value, e.g. "xterm-256color". */
  readonly term: string
  readonly cols: number
  readonly rows: number
  readonly width: number
  readonly height: number
  readonly modes: TerminalModes
}

export function encodePtyRequest(p: PtyRequest): Uint8Array {
  return message((w) =>
    w.string(p.term).uint32(p.cols).uint32(p.rows).uint32(p.width).uint32(p.height).string(encodeTerminalModes(p.modes))
  )
}

export function decodePtyRequest(data: Uint8Array): PtyRequest {
  return read(data, (r) => ({
    term: r.utf8(),
    cols: r.uint32(),
    rows: r.uint32(),
    width: r.uint32(),
    height: r.uint32(),
    modes: decodeTerminalModes(r.string())
  }))
}

export interface X11Request {
  readonly singleConnection: boolean
  /** e.g. "MIT-MAGIC-COOKIE-1" */
  readonly protocol: string
  /** The cookie as hex text, as OpenSSH sends it. */
  readonly cookie: string
  readonly screen: number
}

export function encodeX11Request(p: X11Request): Uint8Array {
  return message((w) => w.bool(p.singleConnection).string(p.protocol).string(p.cookie).uint32(p.screen))
}

export function decodeX11Request(data: Uint8Array): X11Request {
  return read(data, (r) => ({ singleConnection: r.bool(), protocol: r.ascii(), cookie: r.ascii(), screen: r.uint32() }))
}

export interface EnvRequest {
  readonly name: string
  readonly value: string
}

export function encodeEnvRequest(p: EnvRequest): Uint8Array {
  return message((w) => w.string(p.name).string(p.value))
}

export function decodeEnvRequest(data: Uint8Array): EnvRequest {
  return read(data, (r) => ({ name: r.utf8(), value: r.utf8() }))
}

/** exec: the command line. */
export function encodeExecRequest(command: string): Uint8Array {
  return message((w) => w.string(command))
}

export function decodeExecRequest(data: Uint8Array): string {
  return read(data, (r) => r.utf8())
}

/** subsystem: the subsystem name, e.g. "sftp". */
export function encodeSubsystemRequest(name: string): Uint8Array {
  return message((w) => w.string(name))
}

export function decodeSubsystemRequest(data: Uint8Array): string {
  return read(data, (r) => r.ascii())
}

export interface WindowChange {
  readonly cols: number
  readonly rows: number
  readonly width: number
  readonly height: number
}

export function encodeWindowChange(p: WindowChange): Uint8Array {
  return message((w) => w.uint32(p.cols).uint32(p.rows).uint32(p.width).uint32(p.height), 16)
}

export function decodeWindowChange(data: Uint8Array): WindowChange {
  return read(data, (r) => ({ cols: r.uint32(), rows: r.uint32(), width: r.uint32(), height: r.uint32() }))
}

/** xon-xoff: whether the client may do flow control itself. */
export function encodeXonXoff(clientCanDo: boolean): Uint8Array {
  return Uint8Array.of(clientCanDo ? 1 : 0)
}

export function decodeXonXoff(data: Uint8Array): boolean {
  return read(data, (r) => r.bool())
}

/** signal: the signal name without "SIG", e.g. "TERM" (or "INFO@openssh.com"). */
export function encodeSignalRequest(signal: string): Uint8Array {
  return message((w) => w.string(signal))
}

export function decodeSignalRequest(data: Uint8Array): string {
  return read(data, (r) => r.ascii())
}

export function encodeExitStatus(status: number): Uint8Array {
  return message((w) => w.uint32(status), 4)
}

export function decodeExitStatus(data: Uint8Array): number {
  return read(data, (r) => r.uint32())
}

export interface ExitSignal {
  /** The signal name without "SIG", e.g. "KILL". */
  readonly signal: string
  readonly coreDumped: boolean
  readonly message: string
  readonly language: string
}

export function encodeExitSignal(p: ExitSignal): Uint8Array {
  return message((w) => w.string(p.signal).bool(p.coreDumped).string(p.message).string(p.language))
}

export function decodeExitSignal(data: Uint8Array): ExitSignal {
  return read(data, (r) => ({ signal: r.ascii(), coreDumped: r.bool(), message: r.utf8(), language: r.ascii() }))
}

// ---- global requests ----

/** tcpip-forward and cancel-tcpip-forward: the address to bind and the port (0: any). */
export interface TcpipForward {
  readonly address: string
  readonly port: number
}

export function encodeTcpipForward(p: TcpipForward): Uint8Array {
  return message((w) => w.string(p.address).uint32(p.port))
}

export function decodeTcpipForward(data: Uint8Array): TcpipForward {
  return read(data, (r) => ({ address: r.utf8(), port: r.uint32() }))
}

/** The REQUEST_SUCCESS data of a tcpip-forward for port 0: the port the server bound. */
export function encodeTcpipForwardReply(port: number): Uint8Array {
  return message((w) => w.uint32(port), 4)
}

/** The bound port, or undefined when the reply carries none (a fixed port was requested). */
export function decodeTcpipForwardReply(data: Uint8Array): number | undefined {
  if (data.length === 0) return undefined
  return read(data, (r) => r.uint32())
}

/** streamlocal-forward@openssh.com and its cancel: the socket path. */
export function encodeStreamlocalForward(path: string): Uint8Array {
  return message((w) => w.string(path))
}

export function decodeStreamlocalForward(data: Uint8Array): string {
  return read(data, (r) => r.utf8())
}

// ---- channel open payloads ----

export interface DirectTcpip {
  readonly host: string
  readonly port: number
  readonly originatorAddress: string
  readonly originatorPort: number
}

export function encodeDirectTcpip(p: DirectTcpip): Uint8Array {
  return message((w) => w.string(p.host).uint32(p.port).string(p.originatorAddress).uint32(p.originatorPort))
}

export function decodeDirectTcpip(data: Uint8Array): DirectTcpip {
  return read(data, (r) => ({
    host: r.utf8(),
    port: r.uint32(),
    originatorAddress: r.utf8(),
    originatorPort: r.uint32()
  }))
}

export interface ForwardedTcpip {
  /** The address and port that were connected on the server. */
  readonly address: string
  readonly port: number
  readonly originatorAddress: string
  readonly originatorPort: number
}

export function encodeForwardedTcpip(p: ForwardedTcpip): Uint8Array {
  return message((w) => w.string(p.address).uint32(p.port).string(p.originatorAddress).uint32(p.originatorPort))
}

export function decodeForwardedTcpip(data: Uint8Array): ForwardedTcpip {
  return read(data, (r) => ({
    address: r.utf8(),
    port: r.uint32(),
    originatorAddress: r.utf8(),
    originatorPort: r.uint32()
  }))
}

export interface X11Open {
  readonly originatorAddress: string
  readonly originatorPort: number
}

export function encodeX11Open(p: X11Open): Uint8Array {
  return message((w) => w.string(p.originatorAddress).uint32(p.originatorPort))
}

export function decodeX11Open(data: Uint8Array): X11Open {
  return read(data, (r) => ({ originatorAddress: r.utf8(), originatorPort: r.uint32() }))
}

/** direct-streamlocal@openssh.com: the socket path, then a reserved string and uint32. */
export function encodeDirectStreamlocal(path: string): Uint8Array {
  return message((w) => w.string(path).string("").uint32(0))
}

export function decodeDirectStreamlocal(data: Uint8Array): string {
  return read(data, (r) => {
    const path = r.utf8()
    // The reserved fields carry nothing: accept a peer that leaves them out.
    if (r.remaining > 0) {
      r.string()
      r.uint32()
    }
    return path
  })
}

/** forwarded-streamlocal@openssh.com: the socket path, then a reserved string. */
export function encodeForwardedStreamlocal(path: string): Uint8Array {
  return message((w) => w.string(path).string(""))
}

export function decodeForwardedStreamlocal(data: Uint8Array): string {
  return read(data, (r) => {
    const path = r.utf8()
    // The reserved field carries nothing: accept a peer that leaves it out.
    if (r.remaining > 0) r.string()
    return path
  })
}
