# Copyright: 2026 capsnap developers
# GNU General Public License v2.0 or later (see LICENSES/GPL-2.0-or-later.txt or https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later
"""Make capsnap importable on a target, however it was installed there."""

from __future__ import annotations

import os
import sys
import traceback

from ansible.module_utils.basic import missing_required_lib

# capsnap itself needs it (src/capsnap: match statements, zip(strict=), ...).
PYTHON_NEEDED = (3, 11)


def install_locations(version=None):
    """Where capsnap's own packages put the module, for this interpreter's version.

    The interpreter Ansible picks is not always the one the package was built
    for (a second python3.X, /usr/libexec/platform-python, ...), so a normal
    import can miss a capsnap that is there.
    """
    ver = "%d.%d" % tuple((version or sys.version_info)[:2])
    return (
        "/usr/lib/python3/dist-packages",              # the .deb (python3-capsnap)
        "/usr/lib/python%s/site-packages" % ver,       # the rpm: %{python3_sitelib}
        "/usr/local/lib/python%s/dist-packages" % ver,  # pip as root, Debian
        "/usr/local/lib/python%s/site-packages" % ver,  # pip as root, elsewhere
        "/usr/share/capsnap/python",                    # the rpm of capsnap 0.1.0
    )


def _forget_capsnap():
    for name in [n for n in sys.modules if n == "capsnap" or n.startswith("capsnap.")]:
        del sys.modules[name]


def _import_capsnap():
    import capsnap  # pylint: disable=import-outside-toplevel

    # A directory named capsnap without __init__.py (in the working directory,
    # say) imports as an empty namespace package: not capsnap.
    if getattr(capsnap, "__file__", None) is None:
        _forget_capsnap()
        raise ImportError("No module named 'capsnap' (only a namespace package)")


def find_capsnap(locations=None):
    """None once `import capsnap` works; otherwise the traceback of the normal import.

    A known install location is appended to sys.path, never prepended, so that
    it cannot shadow what the interpreter already imports from elsewhere.
    """
    try:
        _import_capsnap()
        return None
    except ImportError:
        failure = traceback.format_exc()
    for place in install_locations() if locations is None else locations:
        if place in sys.path or not os.path.isfile(os.path.join(place, "capsnap", "__init__.py")):
            continue
        sys.path.append(place)
        try:
            _import_capsnap()
            return None
        except ImportError:
            sys.path.remove(place)
            _forget_capsnap()
    return failure


def require_capsnap(module):
    """Fail the task with Ansible's usual message unless capsnap can be imported."""
    if sys.version_info[:2] < PYTHON_NEEDED:
        module.fail_json(msg="capsnap needs Python %d.%d or later on the target, and %s is %s; "
                             "set ansible_python_interpreter" % (
                                 PYTHON_NEEDED + (sys.executable, sys.version.split()[0])))
    failure = find_capsnap()
    if failure is not None:
        module.fail_json(msg=missing_required_lib("capsnap", reason="to read and set file "
                                                  "capabilities"), exception=failure)
