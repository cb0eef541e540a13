"""Action plugin ``ctfleet_router``: the router operations in Ansible's controller process.

The work is :func:`run_params` of ``playbooks/library/ctfleet_router.py`` (which holds the
documentation and the argument spec); here it runs with the controller's own ``ansible``
package, so a ``vault:`` login resolves with ansible-core's VaultLib — run as a module,
AnsiballZ's payload shadowed that package and the module died with a traceback.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ansible.plugins.action import ActionBase

_LIBRARY = Path(__file__).resolve().parent.parent / "library" / "ctfleet_router.py"


def _library():
    spec = importlib.util.spec_from_file_location("ctfleet_router_library", _LIBRARY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False  # ctfleet talks to the routers itself

    def run(self, tmp=None, task_vars=None):
        from ctfleet.core.errors import CtfleetError

        result = super().run(tmp, task_vars)
        lib = _library()
        _validated, args = self.validate_argument_spec(argument_spec=lib.ARGUMENT_SPEC)
        try:
            result.update(lib.run_params(args, bool(self._play_context.check_mode)))
        except CtfleetError as exc:
            result.update(failed=True, msg=str(exc))
        return result
