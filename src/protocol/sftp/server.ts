import { WireError } from "../wire/errors.js"
import type { Attributes } from "./attributes.js"
import { longname } from "./attributes.js"
import { Extension, extensionVersions, Fxp, OpenFlags, SFTP_VERSION, Status } from "./constants.js"
import type { StatusCode } from "./constants.js"
import type { ExtendedRequest, Limits, StatVfs } from "./extensions.js"
import { decodeExtendedPayload, encodeLimits, encodeStatVfs, encodeUsersGroups } from "./extensions.js"
import { SftpFramer } from "./framer.js"
import type { NameEntry, Request, ResponseBody } from "./packets.js"
import { decodeHello, decodeRequest, encodeResponse, encodeVersion, peekRequestId } from "./packets.js"

/** Thrown by a filesystem or handler to answer with a specific status. */
export class SftpStatusError extends Error {
  override readonly name = "SftpStatusError"
  constructor(
    readonly code: StatusCode,
    message: string
  ) {
    super(message)
  }
}

/**
 * The raw per-request interface (what ssh2's server-side SFTP events expose): every decoded
 * request goes to `handle`, which answers with a response body (the session adds the id).
 * Throwing SftpStatusError answers with that status; any other throw answers FAILURE.
 */
export interface SftpRequestHandler {
  /** Extension pairs for the VERSION packet. */
  readonly extensions: ReadonlyArray<readonly [string, string]>
  readonly handle: (request: Request) => Promise<ResponseBody> | ResponseBody
  /** The session ended: release whatever is still open. */
  readonly close?: () => void
}

/** An open file of an SftpFileSystem. Reads return an empty array at end of file. */
export interface SftpFile {
  readonly read: (offset: number, length: number) => Promise<Uint8Array>
  readonly write: (offset: number, data: Uint8Array) => Promise<void>
  readonly stat: () => Promise<Attributes>
  readonly setstat: (attrs: Attributes) => Promise<void>
  readonly close: () => Promise<void>
  readonly sync?: () => Promise<void>
}

/** An open directory: `read` returns the next batch of entries, or undefined at the end. */
export interface SftpDirectory {
  readonly read: () => Promise<ReadonlyArray<{ readonly filename: string; readonly attrs: Attributes }> | undefined>
  readonly close: () => Promise<void>
}

/**
 * What the server needs from a filesystem; paths are as the client sent them. Optional
 * methods enable the matching OpenSSH extension. Failures throw SftpStatusError.
 */
export interface SftpFileSystem {
  readonly open: (path: string, flags: number, attrs: Attributes) => Promise<SftpFile>
  readonly opendir: (path: string) => Promise<SftpDirectory>
  readonly stat: (path: string) => Promise<Attributes>
  readonly lstat: (path: string) => Promise<Attributes>
  readonly setstat: (path: string, attrs: Attributes) => Promise<void>
  readonly remove: (path: string) => Promise<void>
  readonly mkdir: (path: string, attrs: Attributes) => Promise<void>
  readonly rmdir: (path: string) => Promise<void>
  /** The canonical absolute form of a path (it need not exist beyond its parent). */
  readonly realpath: (path: string) => Promise<string>
  readonly readlink: (path: string) => Promise<string>
  readonly symlink: (targetPath: string, linkPath: string) => Promise<void>
  /** SFTP v3 rename: fails when newPath exists. */
  readonly rename: (oldPath: string, newPath: string) => Promise<void>
  readonly posixRename?: (oldPath: string, newPath: string) => Promise<void>
  readonly hardlink?: (oldPath: string, newPath: string) => Promise<void>
  readonly lsetstat?: (path: string, attrs: Attributes) => Promise<void>
  readonly statvfs?: (path: string) => Promise<StatVfs>
  /** "~", "~/x" and "~user/x" expanded, then canonicalised like realpath. */
  readonly expandPath?: (path: string) => Promise<string>
  /** An empty name is the current user. */
  readonly homeDirectory?: (username: string) => Promise<string>
  readonly usersGroups?: (uids: ReadonlyArray<number>, gids: ReadonlyArray<number>) => Promise<{ readonly users: ReadonlyArray<string>; readonly groups: ReadonlyArray<string> }>
}

/** The server's own limits (limits@openssh.com), as OpenSSH's sftp-server sets them. */
export const defaultServerLimits: Limits = {
  maxPacketLength: 256 * 1024,
  maxReadLength: 256 * 1024 - 1024,
  maxWriteLength: 256 * 1024 - 1024,
  maxOpenHandles: 512
}

export interface ServerSessionOptions {
  /** Largest request accepted; also what limits@openssh.com reports. Default 256 KiB. */
  readonly maxPacketLength?: number
}

const ok = (message = "Success"): ResponseBody => ({ type: "status", code: Status.OK, message, language: "" })
const status = (code: number, message: string): ResponseBody => ({ type: "status", code, message, language: "" })

/**
 * The server side of one SFTP session, sans-IO: `receive` the client's bytes, write what
 * `pollTransmit` returns whenever `onOutput` fires. Requests run concurrently and are answered
 * as they finish; malformed ones get BAD_MESSAGE, unknown ones OP_UNSUPPORTED. A broken frame
 * (bad length) ends the session (`ended`), as there is no way to find the next packet.
 */
export class SftpServerSession {
  private readonly framer: SftpFramer
  private outbox: Array<Uint8Array> = []
  private initialized = false
  private inProgress = 0
  /** Why the session ended, if it did; the IO layer then closes the channel. */
  ended: string | undefined
  /** Called when responses are ready to be sent. */
  onOutput: (() => void) | undefined
  /** Called when a request finishes (to resume reading after `busy` fell). */
  onIdle: (() => void) | undefined

  constructor(
    private readonly handler: SftpRequestHandler,
    options: ServerSessionOptions = {}
  ) {
    this.framer = new SftpFramer(options.maxPacketLength ?? defaultServerLimits.maxPacketLength)
  }

  /** Requests being handled now: the IO layer stops reading while this is high. */
  get busy(): number {
    return this.inProgress
  }

  pollTransmit(): Array<Uint8Array> | undefined {
    if (this.outbox.length === 0) return undefined
    const out = this.outbox
    this.outbox = []
    return out
  }

  receive(bytes: Uint8Array): void {
    if (this.ended !== undefined) return
    this.framer.push(bytes)
    for (;;) {
      let body: Uint8Array | undefined
      try {
        body = this.framer.next()
      } catch (e) {
        if (!(e instanceof WireError)) throw e
        return this.end(e.message)
      }
      if (body === undefined) return
      this.dispatch(body)
      if (this.ended !== undefined) return
    }
  }

  /** Ends the session and lets the handler release its resources. */
  end(reason: string): void {
    if (this.ended !== undefined) return
    this.ended = reason
    this.handler.close?.()
    this.onOutput?.()
  }

  private dispatch(body: Uint8Array): void {
    if (!this.initialized) {
      try {
        decodeHello(body, Fxp.INIT)
      } catch (e) {
        return this.end(`expected SSH_FXP_INIT: ${(e as Error).message}`)
      }
      this.initialized = true
      return this.send(encodeVersion({ version: SFTP_VERSION, extensions: this.handler.extensions }))
    }
    let request: Request | undefined
    try {
      request = decodeRequest(body)
    } catch (e) {
      const id = peekRequestId(body)
      if (id === undefined) return this.end(`packet too short to carry a request id`)
      return this.answer(id, status(Status.BAD_MESSAGE, `malformed request: ${(e as Error).message}`))
    }
    if (request === undefined) {
      const id = peekRequestId(body)!
      return this.answer(id, status(Status.OP_UNSUPPORTED, `unsupported packet type ${body[0]}`))
    }
    const id = request.id
    this.inProgress++
    let result: Promise<ResponseBody> | ResponseBody
    try {
      result = this.handler.handle(request)
    } catch (e) {
      result = Promise.reject(e)
    }
    Promise.resolve(result).then(
      (response) => this.finish(id, response),
      (e: unknown) => this.finish(id, errorResponse(e))
    )
  }

  private finish(id: number, response: ResponseBody): void {
    this.inProgress--
    this.answer(id, response)
    this.onIdle?.()
  }

  private answer(id: number, response: ResponseBody): void {
    if (this.ended !== undefined) return
    this.send(encodeResponse({ ...response, id } as Parameters<typeof encodeResponse>[0]))
  }

  private send(packet: Uint8Array): void {
    this.outbox.push(packet)
    this.onOutput?.()
  }
}

function errorResponse(e: unknown): ResponseBody {
  if (e instanceof SftpStatusError) return status(e.code, e.message)
  if (e instanceof WireError) return status(Status.BAD_MESSAGE, e.message)
  return status(Status.FAILURE, e instanceof Error ? e.message : String(e))
}

interface OpenHandle {
  readonly path: string
  readonly file?: SftpFile
  readonly dir?: SftpDirectory
  /** Opened with APPEND: writes land at the end whatever their offset, so they stay in order. */
  readonly append?: boolean
  /**
   * Operations on one handle take effect in arrival order, as the protocol requires; reads and
   * writes that cannot observe each other (no overlap, or both reads) run at the same time,
   * so a client's pipelined requests reach the disk together.
   */
  barrier: Promise<unknown>
  readonly inflight: Set<PositionalOp>
}

/** A read or write in progress on a handle: its byte range and whether it writes. */
interface PositionalOp {
  readonly start: number
  readonly end: number
  readonly write: boolean
  readonly done: Promise<unknown>
}

export interface FileSystemHandlerOptions {
  readonly limits?: Limits
  /** Clock for the `ls -l` lines of directory listings. */
  readonly now?: () => number
}

/**
 * Serves an SftpFileSystem: handles, every v3 request, and the OpenSSH extensions the
 * filesystem supports (limits, fsync and copy-data always).
 */
export function fileSystemHandler(fs: SftpFileSystem, options: FileSystemHandlerOptions = {}): SftpRequestHandler {
  const limits = options.limits ?? defaultServerLimits
  // a READ's length is the client's to choose: never allocate more than this for one, even with "no limit" (0) advertised
  const readCap = limits.maxReadLength > 0 ? limits.maxReadLength : defaultServerLimits.maxReadLength
  const now = options.now ?? Date.now
  const handles = new Map<number, OpenHandle>()
  let nextHandle = 1

  const supported: Array<readonly [string, string]> = []
  const advertise = (name: keyof typeof extensionVersions, when: unknown) => {
    if (when) supported.push([name, extensionVersions[name]])
  }
  advertise(Extension.POSIX_RENAME, fs.posixRename)
  advertise(Extension.STATVFS, fs.statvfs)
  advertise(Extension.FSTATVFS, fs.statvfs)
  advertise(Extension.HARDLINK, fs.hardlink)
  advertise(Extension.FSYNC, true)
  advertise(Extension.LSETSTAT, fs.lsetstat)
  advertise(Extension.LIMITS, true)
  advertise(Extension.EXPAND_PATH, fs.expandPath)
  advertise(Extension.COPY_DATA, true)
  advertise(Extension.HOME_DIRECTORY, fs.homeDirectory)
  advertise(Extension.USERS_GROUPS_BY_ID, fs.usersGroups)
  const advertised = new Set(supported.map(([name]) => name))

  const addHandle = (h: Omit<OpenHandle, "barrier" | "inflight">): ResponseBody => {
    if (limits.maxOpenHandles > 0 && handles.size >= limits.maxOpenHandles) {
      void (h.file ?? h.dir)!.close().catch(() => undefined)
      throw new SftpStatusError(Status.FAILURE, `too many open handles (${limits.maxOpenHandles})`)
    }
    const n = nextHandle++
    handles.set(n, { ...h, barrier: Promise.resolve(), inflight: new Set() })
    const bytes = new Uint8Array(4)
    new DataView(bytes.buffer).setUint32(0, n)
    return { type: "handle", handle: bytes }
  }

  const lookup = (handle: Uint8Array): [number, OpenHandle] => {
    const n = handle.length === 4 ? new DataView(handle.buffer, handle.byteOffset, 4).getUint32(0) : -1
    const h = handles.get(n)
    if (!h) throw new SftpStatusError(Status.FAILURE, "invalid handle")
    return [n, h]
  }
  const fileOf = (handle: Uint8Array): SftpFile => {
    const f = lookup(handle)[1].file
    if (!f) throw new SftpStatusError(Status.FAILURE, "not a file handle")
    return f
  }
  /** Runs `op` after every earlier operation on the handle (stat, setstat, sync, readdir, ...). */
  const onHandle = <A>(handle: Uint8Array, op: (h: OpenHandle) => Promise<A>): Promise<A> => {
    const [, h] = lookup(handle)
    const earlier = [h.barrier, ...[...h.inflight].map((o) => o.done)]
    const run = Promise.all(earlier).then(() => op(h))
    h.barrier = run.catch(() => undefined)
    return run
  }
  /** Runs a read or write of [start, end) after the earlier operations it could observe. */
  const onRange = <A>(handle: Uint8Array, start: number, end: number, write: boolean, op: (h: OpenHandle) => Promise<A>): Promise<A> => {
    const [, h] = lookup(handle)
    if (write && h.append) return onHandle(handle, op)
    const conflicts = [...h.inflight].filter((o) => (write || o.write) && o.start < end && start < o.end).map((o) => o.done)
    const run = Promise.all([h.barrier, ...conflicts]).then(() => op(h))
    const entry: PositionalOp = { start, end, write, done: run.catch(() => undefined) }
    h.inflight.add(entry)
    void entry.done.then(() => h.inflight.delete(entry))
    return run
  }

  const name = (path: string): ResponseBody => ({ type: "name", entries: [{ filename: path, longname: path, attrs: {} }] })

  const copyData = async (req: Extract<ExtendedRequest, { name: typeof Extension.COPY_DATA }>): Promise<ResponseBody> => {
    const [src] = lookup(req.readHandle)
    const [dst] = lookup(req.writeHandle)
    if (src === dst) throw new SftpStatusError(Status.FAILURE, "copy-data: source and destination are the same handle")
    const from = fileOf(req.readHandle)
    const to = fileOf(req.writeHandle)
    let copied = 0
    for (;;) {
      const want = req.length === 0 ? readCap : Math.min(readCap, req.length - copied)
      if (want === 0) break
      const data = await from.read(req.readOffset + copied, want)
      if (data.length === 0) {
        if (req.length === 0) break
        throw new SftpStatusError(Status.EOF, "copy-data: end of file before the requested length")
      }
      await to.write(req.writeOffset + copied, data)
      copied += data.length
    }
    return ok()
  }

  const extended = async (extName: string, data: Uint8Array): Promise<ResponseBody> => {
    if (!advertised.has(extName)) return status(Status.OP_UNSUPPORTED, `unsupported extension ${extName}`)
    const req = decodeExtendedPayload(extName, data)!
    switch (req.name) {
      case Extension.POSIX_RENAME:
        await fs.posixRename!(req.oldPath, req.newPath)
        return ok()
      case Extension.HARDLINK:
        await fs.hardlink!(req.oldPath, req.newPath)
        return ok()
      case Extension.STATVFS:
        return { type: "extended-reply", data: encodeStatVfs(await fs.statvfs!(req.path)) }
      case Extension.FSTATVFS:
        return { type: "extended-reply", data: encodeStatVfs(await fs.statvfs!(lookup(req.handle)[1].path)) }
      case Extension.FSYNC:
        await onHandle(req.handle, async (h) => {
          if (!h.file) throw new SftpStatusError(Status.FAILURE, "not a file handle")
          await h.file.sync?.()
        })
        return ok()
      case Extension.LSETSTAT:
        await fs.lsetstat!(req.path, req.attrs)
        return ok()
      case Extension.LIMITS:
        return { type: "extended-reply", data: encodeLimits(limits) }
      case Extension.EXPAND_PATH:
        return name(await fs.expandPath!(req.path))
      case Extension.COPY_DATA:
        return copyData(req)
      case Extension.HOME_DIRECTORY:
        return name(await fs.homeDirectory!(req.username))
      case Extension.USERS_GROUPS_BY_ID: {
        const { users, groups } = await fs.usersGroups!(req.uids, req.gids)
        return { type: "extended-reply", data: encodeUsersGroups(users, groups) }
      }
    }
  }

  const handle = async (req: Request): Promise<ResponseBody> => {
    switch (req.type) {
      case "open": {
        if (!(req.flags & (OpenFlags.READ | OpenFlags.WRITE))) throw new SftpStatusError(Status.FAILURE, "open: neither read nor write requested")
        return addHandle({ path: req.path, file: await fs.open(req.path, req.flags, req.attrs), append: (req.flags & OpenFlags.APPEND) !== 0 })
      }
      case "opendir":
        return addHandle({ path: req.path, dir: await fs.opendir(req.path) })
      case "close": {
        const [n, h] = lookup(req.handle)
        handles.delete(n)
        await Promise.all([h.barrier, ...[...h.inflight].map((o) => o.done)])
        await (h.file ?? h.dir)!.close()
        return ok()
      }
      case "read": {
        const length = Math.min(req.length, readCap)
        const data = await onRange(req.handle, req.offset, req.offset + length, false, (h) => {
          if (!h.file) throw new SftpStatusError(Status.FAILURE, "not a file handle")
          return h.file.read(req.offset, length)
        })
        return data.length === 0 ? status(Status.EOF, "End of file") : { type: "data", data }
      }
      case "write":
        if (limits.maxWriteLength > 0 && req.data.length > limits.maxWriteLength) {
          throw new SftpStatusError(Status.FAILURE, `write of ${req.data.length} bytes exceeds the limit of ${limits.maxWriteLength}`)
        }
        await onRange(req.handle, req.offset, req.offset + req.data.length, true, (h) => {
          if (!h.file) throw new SftpStatusError(Status.FAILURE, "not a file handle")
          return h.file.write(req.offset, req.data)
        })
        return ok()
      case "fstat":
        return { type: "attrs", attrs: await onHandle(req.handle, (h) => (h.file ? h.file.stat() : fs.stat(h.path))) }
      case "fsetstat":
        await onHandle(req.handle, (h) => (h.file ? h.file.setstat(req.attrs) : fs.setstat(h.path, req.attrs)))
        return ok()
      case "readdir": {
        const batch = await onHandle(req.handle, (h) => {
          if (!h.dir) throw new SftpStatusError(Status.FAILURE, "not a directory handle")
          return h.dir.read()
        })
        if (batch === undefined) return status(Status.EOF, "End of directory")
        const t = now()
        const entries: Array<NameEntry> = batch.map((e) => ({ filename: e.filename, longname: longname(e.filename, e.attrs, t), attrs: e.attrs }))
        return { type: "name", entries }
      }
      case "stat":
        return { type: "attrs", attrs: await fs.stat(req.path) }
      case "lstat":
        return { type: "attrs", attrs: await fs.lstat(req.path) }
      case "setstat":
        await fs.setstat(req.path, req.attrs)
        return ok()
      case "remove":
        await fs.remove(req.path)
        return ok()
      case "mkdir":
        await fs.mkdir(req.path, req.attrs)
        return ok()
      case "rmdir":
        await fs.rmdir(req.path)
        return ok()
      case "realpath":
        return name(await fs.realpath(req.path))
      case "readlink":
        return name(await fs.readlink(req.path))
      case "symlink":
        await fs.symlink(req.targetPath, req.linkPath)
        return ok()
      case "rename":
        await fs.rename(req.oldPath, req.newPath)
        return ok()
      case "extended":
        return extended(req.name, req.data)
    }
  }

  return {
    extensions: supported,
    handle,
    close: () => {
      for (const h of handles.values()) void (h.file ?? h.dir)!.close().catch(() => undefined)
      handles.clear()
    }
  }
}
