import type { SshReader } from "../wire/reader.js"
import type { SshWriter } from "../wire/writer.js"
import { WireError } from "../wire/errors.js"
import { AttrFlags, FileType } from "./constants.js"

/** An extended attribute pair of ATTRS (type is a name like "foo@example.com"). */
export interface ExtendedAttribute {
  readonly type: string
  readonly data: Uint8Array
}

/**
 * File attributes (ATTRS): every field optional, as on the wire. `mode` is the full POSIX
 * st_mode (file type bits included); times are seconds since the epoch.
 */
export interface Attributes {
  readonly size?: number
  readonly uid?: number
  readonly gid?: number
  readonly mode?: number
  readonly atime?: number
  readonly mtime?: number
  readonly extended?: ReadonlyArray<ExtendedAttribute>
}

/** Reads a uint64 that must fit a JavaScript number (sizes and offsets beyond 2^53 are refused). */
export function readSafeUint64(r: SshReader, what: string): number {
  const v = r.uint64()
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new WireError(`${what} ${v} is beyond 2^53`)
  return Number(v)
}

export function writeAttributes(w: SshWriter, a: Attributes): void {
  let flags = 0
  if (a.size !== undefined) flags |= AttrFlags.SIZE
  if (a.uid !== undefined || a.gid !== undefined) flags |= AttrFlags.UIDGID
  if (a.mode !== undefined) flags |= AttrFlags.PERMISSIONS
  if (a.atime !== undefined || a.mtime !== undefined) flags |= AttrFlags.ACMODTIME
  if (a.extended !== undefined && a.extended.length > 0) flags |= AttrFlags.EXTENDED
  w.uint32(flags)
  if (flags & AttrFlags.SIZE) w.uint64(BigInt(a.size!))
  if (flags & AttrFlags.UIDGID) w.uint32(a.uid ?? 0).uint32(a.gid ?? 0)
  if (flags & AttrFlags.PERMISSIONS) w.uint32(a.mode!)
  // v3 can only set both times at once: a missing one takes the other's value
  if (flags & AttrFlags.ACMODTIME) w.uint32(Math.floor(a.atime ?? a.mtime!)).uint32(Math.floor(a.mtime ?? a.atime!))
  if (flags & AttrFlags.EXTENDED) {
    w.uint32(a.extended!.length)
    for (const e of a.extended!) w.string(e.type).string(e.data)
  }
}

const KNOWN_FLAGS = AttrFlags.SIZE | AttrFlags.UIDGID | AttrFlags.PERMISSIONS | AttrFlags.ACMODTIME | AttrFlags.EXTENDED

export function readAttributes(r: SshReader): Attributes {
  const flags = r.uint32()
  if (flags & ~KNOWN_FLAGS) throw new WireError(`unknown ATTRS flags 0x${(flags & ~KNOWN_FLAGS).toString(16)}`)
  const a: { -readonly [K in keyof Attributes]: Attributes[K] } = {}
  if (flags & AttrFlags.SIZE) a.size = readSafeUint64(r, "file size")
  if (flags & AttrFlags.UIDGID) {
    a.uid = r.uint32()
    a.gid = r.uint32()
  }
  if (flags & AttrFlags.PERMISSIONS) a.mode = r.uint32()
  if (flags & AttrFlags.ACMODTIME) {
    a.atime = r.uint32()
    a.mtime = r.uint32()
  }
  if (flags & AttrFlags.EXTENDED) {
    const count = r.uint32()
    // each pair takes at least 8 bytes: a count beyond that is a lie, not an allocation to make
    if (count > r.remaining / 8) throw new WireError(`ATTRS claims ${count} extended attributes in ${r.remaining} bytes`)
    const extended: Array<ExtendedAttribute> = []
    for (let i = 0; i < count; i++) extended.push({ type: r.ascii(), data: r.string() })
    a.extended = extended
  }
  return a
}

/** The file type of a mode, for Stats-like predicates. */
export function fileType(mode: number | undefined): "file" | "directory" | "symlink" | "block" | "character" | "fifo" | "socket" | "unknown" {
  switch ((mode ?? 0) & FileType.MASK) {
    case FileType.REGULAR:
      return "file"
    case FileType.DIRECTORY:
      return "directory"
    case FileType.SYMLINK:
      return "symlink"
    case FileType.BLOCK:
      return "block"
    case FileType.CHARACTER:
      return "character"
    case FileType.FIFO:
      return "fifo"
    case FileType.SOCKET:
      return "socket"
    default:
      return "unknown"
  }
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

/**
 * The `ls -l` line servers put in NAME entries (the draft leaves the format open; clients
 * such as OpenSSH's sftp print it as is). `now` decides between "HH:MM" and the year.
 */
export function longname(filename: string, a: Attributes, now: number, names?: { readonly user?: string; readonly group?: string }): string {
  const mode = a.mode ?? 0
  const typeChar = { file: "-", directory: "d", symlink: "l", block: "b", character: "c", fifo: "p", socket: "s", unknown: "?" }[fileType(mode)]
  const rwx = (bits: number, special: boolean, specialChar: string) =>
    (bits & 4 ? "r" : "-") + (bits & 2 ? "w" : "-") + (special ? (bits & 1 ? specialChar : specialChar.toUpperCase()) : bits & 1 ? "x" : "-")
  const perms =
    rwx((mode >> 6) & 7, (mode & 0o4000) !== 0, "s") + rwx((mode >> 3) & 7, (mode & 0o2000) !== 0, "s") + rwx(mode & 7, (mode & 0o1000) !== 0, "t")
  const mtime = new Date((a.mtime ?? 0) * 1000)
  const recent = Math.abs(now - mtime.getTime()) < 182 * 24 * 3600 * 1000
  const day = `${MONTHS[mtime.getUTCMonth()]} ${String(mtime.getUTCDate()).padStart(2)}`
  const when = recent
    ? `${day} ${String(mtime.getUTCHours()).padStart(2, "0")}:${String(mtime.getUTCMinutes()).padStart(2, "0")}`
    : `${day}  ${mtime.getUTCFullYear()}`
  const user = (names?.user ?? String(a.uid ?? 0)).padEnd(8)
  const group = (names?.group ?? String(a.gid ?? 0)).padEnd(8)
  return `${typeChar}${perms}    1 ${user} ${group} ${String(a.size ?? 0).padStart(8)} ${when} ${filename}`
}
