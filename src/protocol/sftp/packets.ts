import { WireError } from "../wire/errors.js"
import { SshReader } from "../wire/reader.js"
import { SshWriter } from "../wire/writer.js"
import type { Attributes } from "./attributes.js"
import { readAttributes, readSafeUint64, writeAttributes } from "./attributes.js"
import { Fxp } from "./constants.js"

/**
 * The SFTP v3 packets. Every encoder returns a whole packet, uint32 length prefix included,
 * ready to write to the channel; every decoder takes the packet body after the length (as the
 * framer yields it) and throws WireError on anything malformed.
 */

// Paths are bytes on the wire; names that are not UTF-8 decode with replacement characters rather than failing a listing.
const pathDecoder = new TextDecoder("utf-8")

const readPath = (r: SshReader): string => pathDecoder.decode(r.string())

export interface NameEntry {
  readonly filename: string
  readonly longname: string
  readonly attrs: Attributes
}

/** INIT (client) and VERSION (server) both carry a version and extension pairs. */
export interface Hello {
  readonly version: number
  readonly extensions: ReadonlyArray<readonly [name: string, data: string]>
}

export type PathRequestType = "lstat" | "stat" | "opendir" | "remove" | "rmdir" | "realpath" | "readlink"
export type HandleRequestType = "close" | "fstat" | "readdir"

export type Request =
  | { readonly type: "open"; readonly id: number; readonly path: string; readonly flags: number; readonly attrs: Attributes }
  | { readonly type: HandleRequestType; readonly id: number; readonly handle: Uint8Array }
  | { readonly type: "read"; readonly id: number; readonly handle: Uint8Array; readonly offset: number; readonly length: number }
  | { readonly type: "write"; readonly id: number; readonly handle: Uint8Array; readonly offset: number; readonly data: Uint8Array }
  | { readonly type: PathRequestType; readonly id: number; readonly path: string }
  | { readonly type: "setstat" | "mkdir"; readonly id: number; readonly path: string; readonly attrs: Attributes }
  | { readonly type: "fsetstat"; readonly id: number; readonly handle: Uint8Array; readonly attrs: Attributes }
  | { readonly type: "rename"; readonly id: number; readonly oldPath: string; readonly newPath: string }
  /** OpenSSH order on the wire: target first, then the link (PROTOCOL §4.1). */
  | { readonly type: "symlink"; readonly id: number; readonly targetPath: string; readonly linkPath: string }
  | { readonly type: "extended"; readonly id: number; readonly name: string; readonly data: Uint8Array }

export type Response =
  | { readonly type: "status"; readonly id: number; readonly code: number; readonly message: string; readonly language: string }
  | { readonly type: "handle"; readonly id: number; readonly handle: Uint8Array }
  | { readonly type: "data"; readonly id: number; readonly data: Uint8Array }
  | { readonly type: "name"; readonly id: number; readonly entries: ReadonlyArray<NameEntry> }
  | { readonly type: "attrs"; readonly id: number; readonly attrs: Attributes }
  | { readonly type: "extended-reply"; readonly id: number; readonly data: Uint8Array }

type Distribute<U> = U extends unknown ? Omit<U, "id"> : never
/** A request without its id: what callers build; the client session assigns the id. */
export type RequestBody = Distribute<Request>
export type ResponseBody = Distribute<Response>

const pathTypes: Record<PathRequestType, number> = {
  lstat: Fxp.LSTAT,
  stat: Fxp.STAT,
  opendir: Fxp.OPENDIR,
  remove: Fxp.REMOVE,
  rmdir: Fxp.RMDIR,
  realpath: Fxp.REALPATH,
  readlink: Fxp.READLINK
}
const handleTypes: Record<HandleRequestType, number> = { close: Fxp.CLOSE, fstat: Fxp.FSTAT, readdir: Fxp.READDIR }

/** Fills in the length prefix of a packet built with `packet()`. */
function finishPacket(w: SshWriter): Uint8Array {
  const out = w.finish()
  new DataView(out.buffer, out.byteOffset, 4).setUint32(0, out.length - 4)
  return out
}

function packet(type: number, build: (w: SshWriter) => void, sizeHint = 64): Uint8Array {
  const w = new SshWriter(sizeHint)
  w.uint32(0).byte(type)
  build(w)
  return finishPacket(w)
}

/** WRITE with the data copied once into a buffer of exactly the right size. */
function encodeWrite(id: number, handle: Uint8Array, offset: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(writeHeaderLength(handle) + data.length)
  out.set(data, writeHeaderLength(handle))
  return encodeWriteHeader(out, handle, offset, data.length, id)
}

/** Bytes of a WRITE packet before its data: length, type, id, handle, offset, data length. */
export function writeHeaderLength(handle: Uint8Array): number {
  return 4 + 1 + 4 + 4 + handle.length + 8 + 4
}

/**
 * Fills in the header of a WRITE whose `length` bytes of data already sit in `buffer` after
 * `writeHeaderLength(handle)` bytes, and returns the packet, a view of `buffer`: the upload hot
 * path reads the file straight into the packet it sends.
 */
export function encodeWriteHeader(buffer: Uint8Array, handle: Uint8Array, offset: number, length: number, id = 0): Uint8Array {
  const packetLength = writeHeaderLength(handle) + length
  if (packetLength > buffer.length) throw new RangeError(`a WRITE of ${length} bytes does not fit a buffer of ${buffer.length}`)
  const view = new DataView(buffer.buffer, buffer.byteOffset, packetLength)
  view.setUint32(0, packetLength - 4)
  buffer[4] = Fxp.WRITE
  view.setUint32(5, id)
  view.setUint32(9, handle.length)
  buffer.set(handle, 13)
  const p = 13 + handle.length
  view.setUint32(p, Math.floor(offset / 2 ** 32))
  view.setUint32(p + 4, offset >>> 0)
  view.setUint32(p + 8, length)
  return buffer.subarray(0, packetLength)
}

/** DATA built in one pre-sized buffer: the download hot path of the server. */
function encodeData(id: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(13 + data.length)
  const view = new DataView(out.buffer)
  view.setUint32(0, 9 + data.length)
  out[4] = Fxp.DATA
  view.setUint32(5, id)
  view.setUint32(9, data.length)
  out.set(data, 13)
  return out
}

export function encodeInit(hello: Hello): Uint8Array {
  return encodeHello(Fxp.INIT, hello)
}

export function encodeVersion(hello: Hello): Uint8Array {
  return encodeHello(Fxp.VERSION, hello)
}

function encodeHello(type: number, hello: Hello): Uint8Array {
  return packet(type, (w) => {
    w.uint32(hello.version)
    for (const [name, data] of hello.extensions) w.string(name).string(latin1(data))
  })
}

const latin1 = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff)

/** Decodes INIT or VERSION (whichever `type` says), tolerating no extensions. */
export function decodeHello(body: Uint8Array, type: typeof Fxp.INIT | typeof Fxp.VERSION): Hello {
  const r = new SshReader(body)
  const t = r.byte()
  if (t !== type) throw new WireError(`expected SSH_FXP_${type === Fxp.INIT ? "INIT" : "VERSION"}, got packet type ${t}`)
  const version = r.uint32()
  const extensions: Array<readonly [string, string]> = []
  while (r.remaining > 0) extensions.push([r.ascii(), r.ascii()])
  return { version, extensions }
}

export function encodeRequest(req: Request): Uint8Array {
  switch (req.type) {
    case "open":
      return packet(Fxp.OPEN, (w) => {
        w.uint32(req.id).string(req.path).uint32(req.flags)
        writeAttributes(w, req.attrs)
      })
    case "close":
    case "fstat":
    case "readdir":
      return packet(handleTypes[req.type], (w) => w.uint32(req.id).string(req.handle))
    case "read":
      return packet(Fxp.READ, (w) => w.uint32(req.id).string(req.handle).uint64(BigInt(req.offset)).uint32(req.length))
    case "write":
      return encodeWrite(req.id, req.handle, req.offset, req.data)
    case "lstat":
    case "stat":
    case "opendir":
    case "remove":
    case "rmdir":
    case "realpath":
    case "readlink":
      return packet(pathTypes[req.type], (w) => w.uint32(req.id).string(req.path))
    case "setstat":
    case "mkdir":
      return packet(req.type === "setstat" ? Fxp.SETSTAT : Fxp.MKDIR, (w) => {
        w.uint32(req.id).string(req.path)
        writeAttributes(w, req.attrs)
      })
    case "fsetstat":
      return packet(Fxp.FSETSTAT, (w) => {
        w.uint32(req.id).string(req.handle)
        writeAttributes(w, req.attrs)
      })
    case "rename":
      return packet(Fxp.RENAME, (w) => w.uint32(req.id).string(req.oldPath).string(req.newPath))
    case "symlink":
      return packet(Fxp.SYMLINK, (w) => w.uint32(req.id).string(req.targetPath).string(req.linkPath))
    case "extended":
      return packet(Fxp.EXTENDED, (w) => w.uint32(req.id).string(req.name).raw(req.data), 32 + req.data.length)
  }
}

/** The request id of a packet body, when it is long enough to have one (for BAD_MESSAGE answers). */
export function peekRequestId(body: Uint8Array): number | undefined {
  if (body.length < 5) return undefined
  return new DataView(body.buffer, body.byteOffset + 1, 4).getUint32(0)
}

/**
 * Decodes a request. Returns undefined for a packet type this version does not define, so
 * the server can answer OP_UNSUPPORTED; throws WireError when a known type is malformed.
 */
export function decodeRequest(body: Uint8Array): Request | undefined {
  const r = new SshReader(body)
  const type = r.byte()
  const id = r.uint32()
  let req: Request
  switch (type) {
    case Fxp.OPEN:
      req = { type: "open", id, path: readPath(r), flags: r.uint32(), attrs: readAttributes(r) }
      break
    case Fxp.CLOSE:
      req = { type: "close", id, handle: r.string() }
      break
    case Fxp.FSTAT:
      req = { type: "fstat", id, handle: r.string() }
      break
    case Fxp.READDIR:
      req = { type: "readdir", id, handle: r.string() }
      break
    case Fxp.READ:
      req = { type: "read", id, handle: r.string(), offset: readSafeUint64(r, "offset"), length: r.uint32() }
      break
    case Fxp.WRITE:
      req = { type: "write", id, handle: r.string(), offset: readSafeUint64(r, "offset"), data: r.string() }
      break
    case Fxp.LSTAT:
      req = { type: "lstat", id, path: readPath(r) }
      break
    case Fxp.STAT:
      req = { type: "stat", id, path: readPath(r) }
      break
    case Fxp.OPENDIR:
      req = { type: "opendir", id, path: readPath(r) }
      break
    case Fxp.REMOVE:
      req = { type: "remove", id, path: readPath(r) }
      break
    case Fxp.RMDIR:
      req = { type: "rmdir", id, path: readPath(r) }
      break
    case Fxp.REALPATH:
      req = { type: "realpath", id, path: readPath(r) }
      break
    case Fxp.READLINK:
      req = { type: "readlink", id, path: readPath(r) }
      break
    case Fxp.SETSTAT:
      req = { type: "setstat", id, path: readPath(r), attrs: readAttributes(r) }
      break
    case Fxp.MKDIR:
      req = { type: "mkdir", id, path: readPath(r), attrs: readAttributes(r) }
      break
    case Fxp.FSETSTAT:
      req = { type: "fsetstat", id, handle: r.string(), attrs: readAttributes(r) }
      break
    case Fxp.RENAME:
      req = { type: "rename", id, oldPath: readPath(r), newPath: readPath(r) }
      break
    case Fxp.SYMLINK:
      req = { type: "symlink", id, targetPath: readPath(r), linkPath: readPath(r) }
      break
    case Fxp.EXTENDED:
      // the payload's shape depends on the name: the extension codecs check it to the end
      return { type: "extended", id, name: r.ascii(), data: r.rest() }
    default:
      return undefined
  }
  r.end()
  return req
}

export function encodeResponse(res: Response): Uint8Array {
  switch (res.type) {
    case "status":
      return packet(Fxp.STATUS, (w) => w.uint32(res.id).uint32(res.code).string(res.message).string(res.language))
    case "handle":
      return packet(Fxp.HANDLE, (w) => w.uint32(res.id).string(res.handle))
    case "data":
      return encodeData(res.id, res.data)
    case "name":
      return packet(
        Fxp.NAME,
        (w) => {
          w.uint32(res.id).uint32(res.entries.length)
          for (const e of res.entries) {
            w.string(e.filename).string(e.longname)
            writeAttributes(w, e.attrs)
          }
        },
        64 + res.entries.length * 128
      )
    case "attrs":
      return packet(Fxp.ATTRS, (w) => {
        w.uint32(res.id)
        writeAttributes(w, res.attrs)
      })
    case "extended-reply":
      return packet(Fxp.EXTENDED_REPLY, (w) => w.uint32(res.id).raw(res.data), 16 + res.data.length)
  }
}

export function decodeResponse(body: Uint8Array): Response {
  const r = new SshReader(body)
  const type = r.byte()
  const id = r.uint32()
  let res: Response
  switch (type) {
    case Fxp.STATUS: {
      const code = r.uint32()
      // some old servers end the packet after the code
      const message = r.remaining > 0 ? pathDecoder.decode(r.string()) : ""
      const language = r.remaining > 0 ? r.ascii() : ""
      res = { type: "status", id, code, message, language }
      break
    }
    case Fxp.HANDLE:
      res = { type: "handle", id, handle: r.string() }
      break
    case Fxp.DATA:
      res = { type: "data", id, data: r.string() }
      break
    case Fxp.NAME: {
      const count = r.uint32()
      // an entry takes at least 12 bytes: refuse a count the packet cannot hold before allocating for it
      if (count > r.remaining / 12) throw new WireError(`NAME claims ${count} entries in ${r.remaining} bytes`)
      const entries: Array<NameEntry> = []
      for (let i = 0; i < count; i++) entries.push({ filename: readPath(r), longname: readPath(r), attrs: readAttributes(r) })
      res = { type: "name", id, entries }
      break
    }
    case Fxp.ATTRS:
      res = { type: "attrs", id, attrs: readAttributes(r) }
      break
    case Fxp.EXTENDED_REPLY:
      return { type: "extended-reply", id, data: r.rest() }
    default:
      throw new WireError(`unknown SFTP response type ${type}`)
  }
  r.end()
  return res
}
