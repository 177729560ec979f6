"""Storage errors.

StorageError
 ├── RecordNotFound        the named record does not exist
 ├── RecordConflict        the record already exists or is in the wrong state
 │    └── FileShredded     the document's data key was destroyed (retention)
 ├── DocumentDamaged       a stored document is missing from the blob store or fails
 │                         its authentication
 ├── ForeignBlobStore      the blob store's owner marker names another deployment
 ├── MigrationError        the database schema cannot be brought up to date
 ├── AuditChainBroken      an audit entry does not match the chain
 ├── BackupError           a backup or restore refused or failed
 ├── KeyringError          a key is missing, unsafe or inconsistent (the keys of
 │                         another node, a wrong master key, a damaged key file)
 └── StorageUnavailable    the database cannot be reached now
"""


class StorageError(Exception):
    """Root of every error raised by ``storage``."""


class RecordNotFound(StorageError):
    """The named record does not exist."""


class RecordConflict(StorageError):
    """The record already exists, or is not in a state that allows the change."""


class FileShredded(RecordConflict):
    """The document's data key was destroyed at the end of its retention period."""


class DocumentDamaged(StorageError):
    """A recorded document cannot be read back whole and authentic: its content is
    missing from the blob store, or a chunk fails its authentication."""


class ForeignBlobStore(StorageError):
    """The blob store belongs to another deployment (its owner marker names another
    one than this database): this node must not use it."""


class MigrationError(StorageError):
    """The database holds a schema newer than this code, or a migration failed."""


class AuditChainBroken(StorageError):
    """An audit entry's hash does not follow from its content and predecessor."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"audit entry {seq}: {reason}")
        self.seq = seq
        self.reason = reason


class BackupError(StorageError):
    """A backup or restore that was refused or failed; the message says why."""


class KeyringError(StorageError):
    """The key store is missing a key, unsafe, or inconsistent."""


class StorageUnavailable(StorageError):
    """The database cannot be reached now: nothing was written."""
