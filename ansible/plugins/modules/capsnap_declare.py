#!/usr/bin/python
# Copyright: 2026 capsnap developers
# GNU General Public License v2.0 or later (see LICENSES/GPL-2.0-or-later.txt or https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: capsnap_declare
short_description: Declare a file capability locally and apply it, verified
description:
  - Records a local capsnap declaration for O(path) (under C(/etc/capsnap/capabilities.d/) of
    O(root)) and gives the file those capabilities, through capsnap's own code on the target.
    No C(setcap) or C(getcap) is needed there.
  - capsnap's package-manager hooks then put the capabilities back after every upgrade that
    drops them.
  - The module is idempotent. Declaration and file are compared as canonical capability sets,
    so V(cap_net_raw=+ep) and V(cap_net_raw=ep) are the same and a second run reports no change.
version_added: "0.1.0"
author:
  - capsnap developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The declared and the on-disk capabilities, before and after.
  platform:
    platforms: posix
    details: Linux only; file capabilities are the C(security.capability) extended attribute.
options:
  path:
    description:
      - Absolute path of the file, as seen inside O(root).
      - A symlink is refused; declare the file it points to. Symlinked directories are followed
        inside O(root), so on merged /usr V(/bin/ping) and V(/usr/bin/ping) are one declaration.
    type: path
    required: true
  capabilities:
    description:
      - Capability text as C(setcap) takes it (see the cap_text_formats(7) manual page), for example
        V(cap_net_bind_service=+ep).
      - V(none) (or V(=)) masks every package's declaration for the file and keeps it free of
        capabilities, as C(dpkg-statoverride) overrules a package.
      - Required when O(state=present).
    type: str
  state:
    description:
      - V(present) declares the capabilities and applies them.
      - V(absent) removes the local declaration, and the capabilities it put on the file unless
        a package declares some for it.
    type: str
    choices: [present, absent]
    default: present
  reason:
    description:
      - Why the file needs the capabilities; kept as the declaration's comment.
    type: str
  root:
    description:
      - The system to act on (the running system, an image, a chroot); symlinks never lead out
        of it.
    type: path
    default: /
  force:
    description:
      - Set the capabilities even where capsnap's safety policy refuses (interpreters, files
        others can write, ...); the declaration is recorded as forced (C(forced=yes)), as
        C(capsnap declare --force) does.
    type: bool
    default: false
requirements:
  - Python 3.11 or later on the target
  - capsnap on the target, from its .deb (C(python3-capsnap)), its rpm or C(pip install capsnap)
    The module also finds it in those packages' install locations when the interpreter Ansible
    uses does not import it by itself
notes:
  - The same declaration C(capsnap declare) makes, with the same safety policy and messages.
  - Bad input (an unknown capability name, a relative path, an unsafe target) fails the task
    with capsnap's one-line message and changes nothing.
  - Where the kernel refuses the write (a filesystem without extended attributes), the task
    fails with the declaration kept, as C(capsnap declare) does; C(capsnap reapply) applies it
    later.
seealso:
  - module: community.general.capabilities
    description: Sets or removes capabilities with C(setcap); nothing puts them back after a
      package upgrade.
  - module: capsnap.fleet.capsnap_facts
"""

EXAMPLES = r"""
- name: Let the web helper bind port 80
  capsnap.fleet.capsnap_declare:
    path: /usr/lib/web/bind-helper
    capabilities: cap_net_bind_service=+ep
    reason: binds port 80 without root

- name: Drop it again
  capsnap.fleet.capsnap_declare:
    path: /usr/lib/web/bind-helper
    state: absent

- name: Declare it in an image being built
  capsnap.fleet.capsnap_declare:
    root: /srv/images/web
    path: /usr/lib/web/bind-helper
    capabilities: cap_net_bind_service=ep
"""

RETURN = r"""
path:
  description: The path, normalised.
  returned: always
  type: str
  sample: /usr/lib/web/bind-helper
state:
  description: The state asked for.
  returned: always
  type: str
  sample: present
capabilities:
  description: The canonical capability text, as C(getcap) prints it.
  returned: when O(state=present)
  type: str
  sample: cap_net_bind_service=ep
declaration_changed:
  description: Whether the local declaration was (or in check mode would be) written.
  returned: when O(state=present)
  type: bool
  sample: true
file_changed:
  description: Whether the file's capabilities were (or in check mode would be) set.
  returned: when O(state=present)
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.capsnap.fleet.plugins.module_utils.capsnap_import import require_capsnap


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "capabilities": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "reason": {"type": "str"},
            "root": {"type": "path", "default": "/"},
            "force": {"type": "bool", "default": False},
        },
        required_if=[("state", "present", ["capabilities"])],
        supports_check_mode=True,
    )
    require_capsnap(module)
    from capsnap.desired import declare
    from capsnap.errors import CapsnapError
    from capsnap.paths import SystemPaths

    params = module.params
    try:
        result = declare(SystemPaths(root=params["root"]), params["path"],
                         params["capabilities"], state=params["state"],
                         reason=params["reason"], check_mode=module.check_mode,
                         force=params["force"])
    except CapsnapError as exc:
        module.fail_json(msg=str(exc))
    diff = result.pop("diff")
    for message in result.pop("warnings"):
        module.warn(message)
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
