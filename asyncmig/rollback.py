"""``from asyncmig.rollback import RollbackManager``, as the reference guide writes it.

The rollback lives with the rest of the target side, in :mod:`asyncmig.target.rollback`
(the script, the command and the manager), :mod:`asyncmig.target.safety` (is it safe)
and :mod:`asyncmig.target.backup` (the backup first); this module keeps the guide's
import working.
"""

from asyncmig.target.backup import BackupFile
from asyncmig.target.rollback import RollbackManager, RollbackResult
from asyncmig.target.safety import SafetyReport

__all__ = ["BackupFile", "RollbackManager", "RollbackResult", "SafetyReport"]
