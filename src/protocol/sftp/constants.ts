/** SFTP version 3 numbers (draft-ietf-secsh-filexfer-02). */

export const SFTP_VERSION = 3

/** Packet types. */
export const Fxp = {
  INIT: 1,
  VERSION: 2,
  OPEN: 3,
  CLOSE: 4,
  READ: 5,
  WRITE: 6,
  LSTAT: 7,
  FSTAT: 8,
  SETSTAT: 9,
  FSETSTAT: 10,
  OPENDIR: 11,
  READDIR: 12,
  REMOVE: 13,
  MKDIR: 14,
  RMDIR: 15,
  REALPATH: 16,
  STAT: 17,
  RENAME: 18,
  READLINK: 19,
  SYMLINK: 20,
  STATUS: 101,
  HANDLE: 102,
  DATA: 103,
  NAME: 104,
  ATTRS: 105,
  EXTENDED: 200,
  EXTENDED_REPLY: 201
} as const

/** Status codes of SSH_FXP_STATUS. NO_CONNECTION and CONNECTION_LOST are only ever produced locally by clients. */
export const Status = {
  OK: 0,
  EOF: 1,
  NO_SUCH_FILE: 2,
  PERMISSION_DENIED: 3,
  FAILURE: 4,
  BAD_MESSAGE: 5,
  NO_CONNECTION: 6,
  CONNECTION_LOST: 7,
  OP_UNSUPPORTED: 8
} as const
export type StatusCode = (typeof Status)[keyof typeof Status]

/** Open flags (pflags) of SSH_FXP_OPEN. */
export const OpenFlags = {
  READ: 0x01,
  WRITE: 0x02,
  APPEND: 0x04,
  CREAT: 0x08,
  TRUNC: 0x10,
  EXCL: 0x20
} as const

/** Which fields an ATTRS structure carries. */
export const AttrFlags = {
  SIZE: 0x1,
  UIDGID: 0x2,
  PERMISSIONS: 0x4,
  ACMODTIME: 0x8,
  EXTENDED: 0x80000000
} as const

/** File type bits of `permissions` (POSIX st_mode). */
export const FileType = {
  MASK: 0o170000,
  SOCKET: 0o140000,
  SYMLINK: 0o120000,
  REGULAR: 0o100000,
  BLOCK: 0o060000,
  DIRECTORY: 0o040000,
  CHARACTER: 0o020000,
  FIFO: 0o010000
} as const

/** The OpenSSH extensions (PROTOCOL §4) and the filexfer-extensions ones OpenSSH also implements, with their versions. */
export const Extension = {
  POSIX_RENAME: "posix-rename@openssh.com",
  STATVFS: "statvfs@openssh.com",
  FSTATVFS: "fstatvfs@openssh.com",
  HARDLINK: "hardlink@openssh.com",
  FSYNC: "fsync@openssh.com",
  LSETSTAT: "lsetstat@openssh.com",
  LIMITS: "limits@openssh.com",
  EXPAND_PATH: "expand-path@openssh.com",
  COPY_DATA: "copy-data",
  HOME_DIRECTORY: "home-directory",
  USERS_GROUPS_BY_ID: "users-groups-by-id@openssh.com"
} as const
export type ExtensionName = (typeof Extension)[keyof typeof Extension]

/** The version string each extension is advertised with; a client only uses an extension whose version it knows. */
export const extensionVersions: Readonly<Record<ExtensionName, string>> = {
  [Extension.POSIX_RENAME]: "1",
  [Extension.STATVFS]: "2",
  [Extension.FSTATVFS]: "2",
  [Extension.HARDLINK]: "1",
  [Extension.FSYNC]: "1",
  [Extension.LSETSTAT]: "1",
  [Extension.LIMITS]: "1",
  [Extension.EXPAND_PATH]: "1",
  [Extension.COPY_DATA]: "1",
  [Extension.HOME_DIRECTORY]: "1",
  [Extension.USERS_GROUPS_BY_ID]: "1"
}
