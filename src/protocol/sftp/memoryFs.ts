import type { Attributes } from "./attributes.js"
import { FileType, OpenFlags, Status } from "./constants.js"
import type { StatVfs } from "./extensions.js"
import type { SftpDirectory, SftpFile, SftpFileSystem } from "./server.js"
import { SftpStatusError } from "./server.js"

interface Meta {
  mode: number
  uid: number
  gid: number
  atime: number
  mtime: number
}
interface MemFile extends Meta {
  readonly kind: "file"
  data: Uint8Array
  size: number
}
interface MemDir extends Meta {
  readonly kind: "dir"
  readonly entries: Map<string, MemNode>
}
interface MemLink extends Meta {
  readonly kind: "symlink"
  readonly target: string
}
type MemNode = MemFile | MemDir | MemLink

interface Resolved {
  readonly parent: MemDir
  readonly name: string
  readonly node: MemNode | undefined
  /** Canonical path components. */
  readonly segments: ReadonlyArray<string>
}

const MAX_SYMLINK_HOPS = 40
const fail = (code: number, message: string): never => {
  throw new SftpStatusError(code as never, message)
}

export interface MemoryFileSystemOptions {
  readonly uid?: number
  readonly gid?: number
  readonly now?: () => number
}

/**
 * A filesystem held in memory, for tests and sandboxes: files, directories, symlinks, hard
 * links, POSIX permissions as plain data (never enforced: there is only one user). The root is
 * "/", which is also the home directory and where relative paths start.
 */
export function memoryFileSystem(options: MemoryFileSystemOptions = {}): SftpFileSystem {
  const uid = options.uid ?? 1000
  const gid = options.gid ?? 1000
  const seconds = () => Math.floor((options.now ?? Date.now)() / 1000)
  const meta = (mode: number): Meta => ({ mode, uid, gid, atime: seconds(), mtime: seconds() })
  const root: MemDir = { kind: "dir", entries: new Map(), ...meta(FileType.DIRECTORY | 0o755) }

  const walk = (path: string, followLast: boolean, hops = 0): Resolved => {
    if (hops > MAX_SYMLINK_HOPS) fail(Status.FAILURE, `too many levels of symbolic links: ${path}`)
    const parts = path.split("/").filter((p) => p !== "" && p !== ".")
    const stack: Array<MemDir> = [root]
    const segments: Array<string> = []
    if (parts.length === 0) return { parent: root, name: "", node: root, segments }
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!
      const last = i === parts.length - 1
      const dir = stack[stack.length - 1]!
      if (part === "..") {
        if (stack.length > 1) {
          stack.pop()
          segments.pop()
        }
        if (last) return { parent: stack[stack.length - 2] ?? root, name: segments[segments.length - 1] ?? "", node: stack[stack.length - 1]!, segments }
        continue
      }
      let node = dir.entries.get(part)
      let here = [...segments, part]
      if (node?.kind === "symlink" && (!last || followLast)) {
        const target = node.target.startsWith("/") ? node.target : `/${segments.join("/")}/${node.target}`
        const r = walk(target, true, hops + 1)
        if (!r.node) {
          if (last) return r
          fail(Status.NO_SUCH_FILE, `no such file: ${path}`)
        }
        node = r.node
        here = [...r.segments]
        if (!last) {
          if (node!.kind !== "dir") fail(Status.NO_SUCH_FILE, `not a directory: ${path}`)
          // rebuild the stack along the link's target so ".." after it behaves like the kernel's
          stack.length = 1
          let d: MemDir = root
          for (const s of r.segments) {
            d = d.entries.get(s) as MemDir
            stack.push(d)
          }
          segments.splice(0, segments.length, ...here)
          continue
        }
        return { parent: r.parent, name: r.name, node, segments: here }
      }
      if (last) return { parent: dir, name: part, node, segments: here }
      if (!node) fail(Status.NO_SUCH_FILE, `no such file: ${path}`)
      if (node!.kind !== "dir") fail(Status.NO_SUCH_FILE, `not a directory: ${path}`)
      stack.push(node as MemDir)
      segments.push(part)
    }
    throw new Error("unreachable")
  }

  const existing = (path: string, follow: boolean): MemNode => {
    const r = walk(path, follow)
    if (!r.node) fail(Status.NO_SUCH_FILE, `no such file: ${path}`)
    return r.node!
  }

  const attrsOf = (n: MemNode): Attributes => ({
    size: n.kind === "file" ? n.size : n.kind === "symlink" ? n.target.length : 4096,
    uid: n.uid,
    gid: n.gid,
    mode: n.mode,
    atime: n.atime,
    mtime: n.mtime
  })

  const resize = (f: MemFile, size: number) => {
    if (size > f.data.length) {
      const grown = new Uint8Array(Math.max(size, f.data.length * 2))
      grown.set(f.data.subarray(0, f.size))
      f.data = grown
    } else if (size < f.size) {
      f.data.fill(0, size, f.size)
    }
    f.size = size
  }

  const applyAttrs = (n: MemNode, a: Attributes) => {
    if (a.size !== undefined) {
      if (n.kind !== "file") fail(Status.FAILURE, "can only set the size of a regular file")
      resize(n as MemFile, a.size)
    }
    if (a.mode !== undefined) n.mode = (n.mode & FileType.MASK) | (a.mode & 0o7777)
    if (a.uid !== undefined) n.uid = a.uid
    if (a.gid !== undefined) n.gid = a.gid
    if (a.atime !== undefined) n.atime = a.atime
    if (a.mtime !== undefined) n.mtime = a.mtime
  }

  const create = (path: string, node: MemNode) => {
    const r = walk(path, false)
    if (r.node) fail(Status.FAILURE, `already exists: ${path}`)
    if (r.name === "") fail(Status.FAILURE, `cannot create ${path}`)
    r.parent.entries.set(r.name, node)
    r.parent.mtime = seconds()
  }

  const openFile = (f: MemFile, flags: number): SftpFile => {
    let closed = false
    const check = (need: number) => {
      if (closed) fail(Status.FAILURE, "file is closed")
      if (!(flags & need)) fail(Status.PERMISSION_DENIED, need === OpenFlags.READ ? "not opened for reading" : "not opened for writing")
    }
    return {
      read: async (offset, length) => {
        check(OpenFlags.READ)
        f.atime = seconds()
        if (offset >= f.size) return new Uint8Array(0)
        return f.data.slice(offset, Math.min(f.size, offset + length))
      },
      write: async (offset, data) => {
        check(OpenFlags.WRITE)
        const at = flags & OpenFlags.APPEND ? f.size : offset
        if (at + data.length > f.size) resize(f, at + data.length)
        f.data.set(data, at)
        f.mtime = seconds()
      },
      stat: async () => attrsOf(f),
      setstat: async (a) => applyAttrs(f, a),
      close: async () => {
        closed = true
      },
      sync: async () => undefined
    }
  }

  return {
    open: async (path, flags, attrs) => {
      const r = walk(path, true)
      let node = r.node
      if (node && flags & OpenFlags.CREAT && flags & OpenFlags.EXCL) fail(Status.FAILURE, `already exists: ${path}`)
      if (!node) {
        if (!(flags & OpenFlags.CREAT)) fail(Status.NO_SUCH_FILE, `no such file: ${path}`)
        if (r.name === "") fail(Status.FAILURE, `cannot create ${path}`)
        node = { kind: "file", data: new Uint8Array(0), size: 0, ...meta(FileType.REGULAR | ((attrs.mode ?? 0o644) & 0o7777)) }
        r.parent.entries.set(r.name, node)
      }
      if (node.kind === "dir") fail(Status.FAILURE, `is a directory: ${path}`)
      const file = node as MemFile
      if (flags & OpenFlags.TRUNC && flags & OpenFlags.WRITE) resize(file, 0)
      return openFile(file, flags)
    },
    opendir: async (path) => {
      const node = existing(path, true)
      if (node.kind !== "dir") fail(Status.FAILURE, `not a directory: ${path}`)
      const names = [".", "..", ...(node as MemDir).entries.keys()]
      let position = 0
      const dir: SftpDirectory = {
        read: async () => {
          if (position >= names.length) return undefined
          const batch = names.slice(position, position + 100)
          position += batch.length
          return batch.map((filename) => {
            const child = filename === "." || filename === ".." ? node : (node as MemDir).entries.get(filename)
            return { filename, attrs: child ? attrsOf(child) : {} }
          })
        },
        close: async () => undefined
      }
      return dir
    },
    stat: async (path) => attrsOf(existing(path, true)),
    lstat: async (path) => attrsOf(existing(path, false)),
    setstat: async (path, attrs) => applyAttrs(existing(path, true), attrs),
    lsetstat: async (path, attrs) => applyAttrs(existing(path, false), attrs),
    remove: async (path) => {
      const r = walk(path, false)
      if (!r.node) fail(Status.NO_SUCH_FILE, `no such file: ${path}`)
      if (r.node!.kind === "dir") fail(Status.FAILURE, `is a directory: ${path}`)
      r.parent.entries.delete(r.name)
    },
    mkdir: async (path, attrs) =>
      create(path, { kind: "dir", entries: new Map(), ...meta(FileType.DIRECTORY | ((attrs.mode ?? 0o755) & 0o7777)) }),
    rmdir: async (path) => {
      const r = walk(path, false)
      if (!r.node) fail(Status.NO_SUCH_FILE, `no such file: ${path}`)
      if (r.node!.kind !== "dir") fail(Status.FAILURE, `not a directory: ${path}`)
      if ((r.node as MemDir).entries.size > 0) fail(Status.FAILURE, `directory not empty: ${path}`)
      if (r.node === root) fail(Status.PERMISSION_DENIED, "cannot remove the root")
      r.parent.entries.delete(r.name)
    },
    realpath: async (path) => `/${walk(path, true).segments.join("/")}`,
    readlink: async (path) => {
      const node = existing(path, false)
      if (node.kind !== "symlink") fail(Status.FAILURE, `not a symbolic link: ${path}`)
      return (node as MemLink).target
    },
    symlink: async (targetPath, linkPath) => create(linkPath, { kind: "symlink", target: targetPath, ...meta(FileType.SYMLINK | 0o777) }),
    rename: async (oldPath, newPath) => {
      const from = walk(oldPath, false)
      if (!from.node) fail(Status.NO_SUCH_FILE, `no such file: ${oldPath}`)
      const to = walk(newPath, false)
      if (to.node) fail(Status.FAILURE, `already exists: ${newPath}`)
      from.parent.entries.delete(from.name)
      to.parent.entries.set(to.name, from.node!)
    },
    posixRename: async (oldPath, newPath) => {
      const from = walk(oldPath, false)
      if (!from.node) fail(Status.NO_SUCH_FILE, `no such file: ${oldPath}`)
      const to = walk(newPath, false)
      if (to.node?.kind === "dir" && (from.node!.kind !== "dir" || to.node.entries.size > 0)) fail(Status.FAILURE, `cannot replace ${newPath}`)
      from.parent.entries.delete(from.name)
      to.parent.entries.set(to.name, from.node!)
    },
    hardlink: async (oldPath, newPath) => {
      const node = existing(oldPath, false)
      if (node.kind === "dir") fail(Status.FAILURE, `cannot hard-link a directory: ${oldPath}`)
      create(newPath, node)
    },
    statvfs: async (): Promise<StatVfs> => ({
      bsize: 4096,
      frsize: 4096,
      blocks: 1 << 20,
      bfree: 1 << 19,
      bavail: 1 << 19,
      files: 1 << 16,
      ffree: 1 << 15,
      favail: 1 << 15,
      fsid: 0,
      flag: 0,
      namemax: 255
    }),
    expandPath: async (path) => `/${walk(path.replace(/^~[^/]*/, ""), true).segments.join("/")}`,
    homeDirectory: async () => "/",
    usersGroups: async (uids, gids) => ({
      users: uids.map((u) => (u === uid ? "user" : "")),
      groups: gids.map((g) => (g === gid ? "group" : ""))
    })
  }
}
