import { WireError } from "../wire/errors.js"
import { SshReader } from "../wire/reader.js"
import { SshWriter } from "../wire/writer.js"
import type { Attributes } from "./attributes.js"
import { readAttributes, readSafeUint64, writeAttributes } from "./attributes.js"
import { Extension } from "./constants.js"

/**
 * Payload codecs of the extended requests (the bytes after the name in SSH_FXP_EXTENDED)
 * and of their EXTENDED_REPLY bodies (the bytes after the id), per OpenSSH's PROTOCOL §4.
 */

export type ExtendedRequest =
  | { readonly name: typeof Extension.POSIX_RENAME | typeof Extension.HARDLINK; readonly oldPath: string; readonly newPath: string }
  | { readonly name: typeof Extension.STATVFS | typeof Extension.EXPAND_PATH; readonly path: string }
  | { readonly name: typeof Extension.FSTATVFS | typeof Extension.FSYNC; readonly handle: Uint8Array }
  | { readonly name: typeof Extension.LSETSTAT; readonly path: string; readonly attrs: Attributes }
  | { readonly name: typeof Extension.LIMITS }
  | {
      readonly name: typeof Extension.COPY_DATA
      readonly readHandle: Uint8Array
      readonly readOffset: number
      /** 0 means "until EOF". */
      readonly length: number
      readonly writeHandle: Uint8Array
      readonly writeOffset: number
    }
  | { readonly name: typeof Extension.HOME_DIRECTORY; readonly username: string }
  | { readonly name: typeof Extension.USERS_GROUPS_BY_ID; readonly uids: ReadonlyArray<number>; readonly gids: ReadonlyArray<number> }

/** statvfs(2) as statvfs@openssh.com returns it. */
export interface StatVfs {
  readonly bsize: number
  readonly frsize: number
  readonly blocks: number
  readonly bfree: number
  readonly bavail: number
  readonly files: number
  readonly ffree: number
  readonly favail: number
  readonly fsid: number
  readonly flag: number
  readonly namemax: number
}

/** SSH_FXE_STATVFS_ST_* bits of StatVfs.flag. */
export const StatVfsFlag = { RDONLY: 0x1, NOSUID: 0x2 } as const

/** limits@openssh.com; 0 means "no specific limit". */
export interface Limits {
  readonly maxPacketLength: number
  readonly maxReadLength: number
  readonly maxWriteLength: number
  readonly maxOpenHandles: number
}

const decoder = new TextDecoder("utf-8")
const STATVFS_FIELDS = ["bsize", "frsize", "blocks", "bfree", "bavail", "files", "ffree", "favail", "fsid", "flag", "namemax"] as const

/** The payload (after the name) of an extended request. */
export function encodeExtendedPayload(req: ExtendedRequest): Uint8Array {
  const w = new SshWriter(64)
  switch (req.name) {
    case Extension.POSIX_RENAME:
    case Extension.HARDLINK:
      w.string(req.oldPath).string(req.newPath)
      break
    case Extension.STATVFS:
    case Extension.EXPAND_PATH:
      w.string(req.path)
      break
    case Extension.FSTATVFS:
    case Extension.FSYNC:
      w.string(req.handle)
      break
    case Extension.LSETSTAT:
      w.string(req.path)
      writeAttributes(w, req.attrs)
      break
    case Extension.LIMITS:
      break
    case Extension.COPY_DATA:
      w.string(req.readHandle).uint64(BigInt(req.readOffset)).uint64(BigInt(req.length)).string(req.writeHandle).uint64(BigInt(req.writeOffset))
      break
    case Extension.HOME_DIRECTORY:
      w.string(req.username)
      break
    case Extension.USERS_GROUPS_BY_ID: {
      w.string(idList(req.uids)).string(idList(req.gids))
      break
    }
  }
  return w.finish()
}

const idList = (ids: ReadonlyArray<number>): Uint8Array => {
  const w = new SshWriter(4 * ids.length + 4)
  for (const id of ids) w.uint32(id)
  return w.finish()
}

/** Decodes the payload of a known extension; undefined for a name we do not implement. Throws WireError when malformed. */
export function decodeExtendedPayload(name: string, data: Uint8Array): ExtendedRequest | undefined {
  const r = new SshReader(data)
  const path = () => decoder.decode(r.string())
  let req: ExtendedRequest
  switch (name) {
    case Extension.POSIX_RENAME:
    case Extension.HARDLINK:
      req = { name, oldPath: path(), newPath: path() }
      break
    case Extension.STATVFS:
    case Extension.EXPAND_PATH:
      req = { name, path: path() }
      break
    case Extension.FSTATVFS:
    case Extension.FSYNC:
      req = { name, handle: r.string() }
      break
    case Extension.LSETSTAT:
      req = { name, path: path(), attrs: readAttributes(r) }
      break
    case Extension.LIMITS:
      req = { name }
      break
    case Extension.COPY_DATA:
      req = {
        name,
        readHandle: r.string(),
        readOffset: readSafeUint64(r, "offset"),
        length: readSafeUint64(r, "length"),
        writeHandle: r.string(),
        writeOffset: readSafeUint64(r, "offset")
      }
      break
    case Extension.HOME_DIRECTORY:
      req = { name, username: path() }
      break
    case Extension.USERS_GROUPS_BY_ID:
      req = { name, uids: readIdList(r.string()), gids: readIdList(r.string()) }
      break
    default:
      return undefined
  }
  r.end()
  return req
}

function readIdList(bytes: Uint8Array): Array<number> {
  if (bytes.length % 4 !== 0) throw new WireError(`id list of ${bytes.length} bytes is not a multiple of 4`)
  const r = new SshReader(bytes)
  const ids: Array<number> = []
  while (r.remaining > 0) ids.push(r.uint32())
  return ids
}

export function encodeStatVfs(s: StatVfs): Uint8Array {
  const w = new SshWriter(88)
  for (const f of STATVFS_FIELDS) w.uint64(BigInt(s[f]))
  return w.finish()
}

export function decodeStatVfs(data: Uint8Array): StatVfs {
  const r = new SshReader(data)
  const out: Record<string, number> = {}
  for (const f of STATVFS_FIELDS) {
    // fsid and flag are bit patterns, not quantities: keep their low 53 bits rather than refusing them
    out[f] = f === "fsid" || f === "flag" ? Number(r.uint64() & 0x1fffffffffffffn) : readSafeUint64(r, f)
  }
  r.end()
  return out as unknown as StatVfs
}

export function encodeLimits(l: Limits): Uint8Array {
  return new SshWriter(32)
    .uint64(BigInt(l.maxPacketLength))
    .uint64(BigInt(l.maxReadLength))
    .uint64(BigInt(l.maxWriteLength))
    .uint64(BigInt(l.maxOpenHandles))
    .finish()
}

export function decodeLimits(data: Uint8Array): Limits {
  const r = new SshReader(data)
  const l = {
    maxPacketLength: readSafeUint64(r, "max-packet-length"),
    maxReadLength: readSafeUint64(r, "max-read-length"),
    maxWriteLength: readSafeUint64(r, "max-write-length"),
    maxOpenHandles: readSafeUint64(r, "max-open-handles")
  }
  r.end()
  return l
}

export function encodeUsersGroups(users: ReadonlyArray<string>, groups: ReadonlyArray<string>): Uint8Array {
  const list = (names: ReadonlyArray<string>) => {
    const w = new SshWriter(16 * names.length + 4)
    for (const n of names) w.string(n)
    return w.finish()
  }
  return new SshWriter(64).string(list(users)).string(list(groups)).finish()
}

export function decodeUsersGroups(data: Uint8Array): { readonly users: Array<string>; readonly groups: Array<string> } {
  const r = new SshReader(data)
  const list = (bytes: Uint8Array) => {
    const lr = new SshReader(bytes)
    const names: Array<string> = []
    while (lr.remaining > 0) names.push(decoder.decode(lr.string()))
    return names
  }
  const users = list(r.string())
  const groups = list(r.string())
  r.end()
  return { users, groups }
}

/** An EXTENDED request body for a known extension, ready for `SftpClientSession.request`. */
export const extendedRequest = (req: ExtendedRequest): { readonly type: "extended"; readonly name: string; readonly data: Uint8Array } => ({
  type: "extended",
  name: req.name,
  data: encodeExtendedPayload(req)
})
