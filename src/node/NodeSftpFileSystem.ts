import { constants, realpathSync } from "node:fs"
import type { Stats } from "node:fs"
import * as fsp from "node:fs/promises"
import { posix } from "node:path"
import type { Attributes } from "../protocol/sftp/attributes.js"
import { OpenFlags, Status } from "../protocol/sftp/constants.js"
import type { SftpDirectory, SftpFile, SftpFileSystem } from "../protocol/sftp/server.js"
import { SftpStatusError } from "../protocol/sftp/server.js"

/** Maps an errno to a status; the message names the client's path, never the real one under the root. */
function statusOf(e: unknown, path: string): SftpStatusError {
  if (e instanceof SftpStatusError) return e
  const code = (e as NodeJS.ErrnoException).code ?? "EIO"
  switch (code) {
    case "ENOENT":
    case "ENOTDIR":
      return new SftpStatusError(Status.NO_SUCH_FILE, `No such file: ${path}`)
    case "EACCES":
    case "EPERM":
    case "EROFS":
      return new SftpStatusError(Status.PERMISSION_DENIED, `Permission denied: ${path}`)
    default:
      return new SftpStatusError(Status.FAILURE, `${code}: ${path}`)
  }
}

const attrsOf = (s: Stats): Attributes => ({
  size: s.size,
  uid: s.uid,
  gid: s.gid,
  mode: s.mode,
  atime: Math.floor(s.atimeMs / 1000),
  mtime: Math.floor(s.mtimeMs / 1000)
})

const DIR_BATCH = 100

/**
 * The real filesystem, jailed under `root`: the client sees `root` as "/" (also its home and
 * where relative paths start). Every path is resolved with realpath and must stay inside the
 * root — `..`, absolute paths and symlinks pointing outside are refused with PERMISSION_DENIED —
 * and files are created with O_NOFOLLOW so a dangling link cannot lead out either.
 */
export function nodeFileSystem(root: string): SftpFileSystem {
  const realRoot = realpathSync(root)
  const inside = (real: string) => real === realRoot || real.startsWith(realRoot === "/" ? "/" : `${realRoot}/`)
  const denied = (path: string) => new SftpStatusError(Status.PERMISSION_DENIED, `Permission denied: ${path} is outside the served directory`)
  /** The client's path, normalised: absolute, no "." or "..", relative to "/". */
  const virtual = (path: string) => posix.resolve("/", path)
  const toVirtual = (real: string) => (real === realRoot ? "/" : `/${real.slice(realRoot.length + (realRoot === "/" ? 0 : 1))}`)

  /** The real path with the last component not followed (for lstat, remove, rename, creating). */
  const resolveParent = async (path: string): Promise<string> => {
    const v = virtual(path)
    if (v === "/") return realRoot
    let parent: string
    try {
      parent = await fsp.realpath(posix.join(realRoot, posix.dirname(v)))
    } catch (e) {
      throw statusOf(e, path)
    }
    if (!inside(parent)) throw denied(path)
    return posix.join(parent, posix.basename(v))
  }

  /** The real path with every symlink followed; a missing last component resolves through its parent. */
  const resolve = async (path: string): Promise<string> => {
    const v = virtual(path)
    let real: string
    try {
      real = await fsp.realpath(posix.join(realRoot, v))
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw statusOf(e, path)
      const candidate = await resolveParent(path)
      // a dangling symlink: where it points is unknown territory, refuse rather than follow
      const l = await fsp.lstat(candidate).catch(() => undefined)
      if (l?.isSymbolicLink()) throw denied(path)
      return candidate
    }
    if (!inside(real)) throw denied(path)
    return real
  }

  const io = async <A>(path: string, run: () => Promise<A>): Promise<A> => {
    try {
      return await run()
    } catch (e) {
      throw statusOf(e, path)
    }
  }

  const applyAttrs = async (real: string, path: string, a: Attributes, follow: boolean) =>
    io(path, async () => {
      if (a.size !== undefined) await fsp.truncate(real, a.size)
      if (a.mode !== undefined && follow) await fsp.chmod(real, a.mode & 0o7777)
      if (a.uid !== undefined && a.gid !== undefined) await (follow ? fsp.chown : fsp.lchown)(real, a.uid, a.gid)
      if (a.atime !== undefined && a.mtime !== undefined) await (follow ? fsp.utimes : fsp.lutimes)(real, a.atime, a.mtime)
    })

  const openFile = (fh: fsp.FileHandle, path: string): SftpFile => ({
    read: (offset, length) =>
      io(path, async () => {
        const buffer = new Uint8Array(length)
        const { bytesRead } = await fh.read(buffer, 0, length, offset)
        return buffer.subarray(0, bytesRead)
      }),
    write: (offset, data) =>
      io(path, async () => {
        let done = 0
        while (done < data.length) {
          const { bytesWritten } = await fh.write(data, done, data.length - done, offset + done)
          done += bytesWritten
        }
      }),
    stat: () => io(path, async () => attrsOf(await fh.stat())),
    setstat: (a) =>
      io(path, async () => {
        if (a.size !== undefined) await fh.truncate(a.size)
        if (a.mode !== undefined) await fh.chmod(a.mode & 0o7777)
        if (a.uid !== undefined && a.gid !== undefined) await fh.chown(a.uid, a.gid)
        if (a.atime !== undefined && a.mtime !== undefined) await fh.utimes(a.atime, a.mtime)
      }),
    close: () => io(path, () => fh.close()),
    sync: () => io(path, () => fh.sync())
  })

  const rename = async (oldPath: string, newPath: string, replace: boolean) => {
    const from = await resolveParent(oldPath)
    const to = await resolveParent(newPath)
    if (!replace && (await fsp.lstat(to).then(() => true, () => false))) {
      throw new SftpStatusError(Status.FAILURE, `File exists: ${newPath}`)
    }
    await io(oldPath, () => fsp.rename(from, to))
  }

  return {
    open: async (path, flags, attrs) => {
      const real = await resolve(path)
      let f = flags & OpenFlags.WRITE ? (flags & OpenFlags.READ ? constants.O_RDWR : constants.O_WRONLY) : constants.O_RDONLY
      if (flags & OpenFlags.APPEND) f |= constants.O_APPEND
      if (flags & OpenFlags.CREAT) f |= constants.O_CREAT | constants.O_NOFOLLOW
      if (flags & OpenFlags.TRUNC) f |= constants.O_TRUNC
      if (flags & OpenFlags.EXCL) f |= constants.O_EXCL
      const fh = await io(path, () => fsp.open(real, f, (attrs.mode ?? 0o666) & 0o7777))
      const s = await fh.stat()
      if (s.isDirectory()) {
        await fh.close()
        throw new SftpStatusError(Status.FAILURE, `Is a directory: ${path}`)
      }
      return openFile(fh, path)
    },
    opendir: async (path) => {
      const real = await resolve(path)
      const dir = await io(path, () => fsp.opendir(real))
      let dots: Array<string> | undefined = [".", ".."]
      const handle: SftpDirectory = {
        read: () =>
          io(path, async () => {
            const names = dots ?? []
            dots = undefined
            while (names.length < DIR_BATCH) {
              const entry = await dir.read()
              if (entry === null) break
              names.push(entry.name)
            }
            if (names.length === 0) return undefined
            return Promise.all(
              names.map(async (filename) => {
                const target = filename === ".." ? posix.dirname(real) : posix.join(real, filename)
                const s = await fsp.lstat(target).catch(() => undefined)
                return { filename, attrs: s ? attrsOf(s) : {} }
              })
            )
          }),
        close: () => io(path, () => dir.close()).catch(() => undefined)
      }
      return handle
    },
    stat: async (path) => {
      const real = await resolve(path)
      return io(path, async () => attrsOf(await fsp.stat(real)))
    },
    lstat: async (path) => {
      const real = await resolveParent(path)
      return io(path, async () => attrsOf(await fsp.lstat(real)))
    },
    setstat: async (path, attrs) => applyAttrs(await resolve(path), path, attrs, true),
    lsetstat: async (path, attrs) => applyAttrs(await resolveParent(path), path, attrs, false),
    remove: async (path) => {
      const real = await resolveParent(path)
      await io(path, () => fsp.unlink(real))
    },
    mkdir: async (path, attrs) => {
      const real = await resolveParent(path)
      await io(path, () => fsp.mkdir(real, { mode: (attrs.mode ?? 0o777) & 0o7777 }))
    },
    rmdir: async (path) => {
      const real = await resolveParent(path)
      if (real === realRoot) throw denied(path)
      await io(path, () => fsp.rmdir(real))
    },
    realpath: async (path) => toVirtual(await resolve(path)),
    readlink: async (path) => {
      const real = await resolveParent(path)
      const target = await io(path, () => fsp.readlink(real))
      return target.startsWith("/") && inside(target) ? toVirtual(target) : target
    },
    symlink: async (targetPath, linkPath) => {
      const real = await resolveParent(linkPath)
      // an absolute target means the client's "/", which is our root
      const target = targetPath.startsWith("/") ? posix.join(realRoot, virtual(targetPath)) : targetPath
      await io(linkPath, () => fsp.symlink(target, real))
    },
    rename: (oldPath, newPath) => rename(oldPath, newPath, false),
    posixRename: (oldPath, newPath) => rename(oldPath, newPath, true),
    hardlink: async (oldPath, newPath) => {
      const from = await resolve(oldPath)
      const to = await resolveParent(newPath)
      await io(newPath, () => fsp.link(from, to))
    },
    statvfs: async (path) => {
      const real = await resolve(path)
      const s = await io(path, () => fsp.statfs(real))
      return {
        bsize: s.bsize,
        frsize: s.bsize,
        blocks: s.blocks,
        bfree: s.bfree,
        bavail: s.bavail,
        files: s.files,
        ffree: s.ffree,
        favail: s.ffree,
        fsid: 0,
        flag: 0,
        namemax: 255
      }
    },
    expandPath: async (path) => toVirtual(await resolve(path.replace(/^~[^/]*/, "/"))),
    homeDirectory: async () => "/",
    usersGroups: async (uids, gids) => {
      const table = async (file: string) => {
        const text = await fsp.readFile(file, "utf8").catch(() => "")
        const names = new Map<number, string>()
        for (const line of text.split("\n")) {
          const [name, , id] = line.split(":")
          if (name && id !== undefined && !names.has(Number(id))) names.set(Number(id), name)
        }
        return names
      }
      const users = await table("/etc/passwd")
      const groups = await table("/etc/group")
      return { users: uids.map((u) => users.get(u) ?? ""), groups: gids.map((g) => groups.get(g) ?? "") }
    }
  }
}
