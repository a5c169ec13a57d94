#!/usr/bin/python
# Copyright: 2026 capsnap developers
# GNU General Public License v2.0 or later (see COPYING or https://www.gnu.org/licenses/gpl-2.0.txt)

DOCUMENTATION = r"""
---
module: capsnap_declare
short_description: Declare a file capability locally and apply it, verified
description:
  - Records a local capsnap declaration for I(path) (under C(/etc/capsnap/capabilities.d/) of
    I(root)) and gives the file those capabilities, through capsnap's own code on the target
    (no setcap or getcap needed there). capsnap's package-manager hooks then put them back
    after every upgrade.
  - Idempotent: declaration and file are compared as canonical capability sets, so
    C(cap_net_raw=+ep) and C(cap_net_raw=ep) are the same and a second run reports no change.
  - Supports check mode and diff mode.
version_added: "0.1.0"
options:
  path:
    description: Absolute path of the file, as seen inside I(root).
    type: str
    required: true
  capabilities:
    description: Capability text as setcap(8) takes it (cap_text_formats(7)). Required when I(state=present).
    type: str
  state:
    description: C(present) declares and applies; C(absent) removes the local declaration, and
      the capability it put on the file unless a package declares one.
    type: str
    choices: [present, absent]
    default: present
  reason:
    description: Why; kept as the declaration's comment.
    type: str
  root:
    description: The system to act on (an image, a chroot, a scratch root); symlinks never lead out of it.
    type: str
    default: /
  force:
    description: Set even where capsnap's safety policy refuses (interpreters, writable files, ...).
    type: bool
    default: false
requirements:
  - capsnap (the Python package) on the target
author:
  - capsnap developers
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
"""

RETURN = r"""
path:
  description: The path, normalised.
  returned: always
  type: str
capabilities:
  description: The canonical capability text, as getcap prints it.
  returned: when state is present
  type: str
declaration_changed:
  description: Whether the local declaration was (or would be) written.
  returned: when state is present
  type: bool
file_changed:
  description: Whether the file's capabilities were (or would be) set.
  returned: when state is present
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "str", "required": True},
            "capabilities": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "reason": {"type": "str"},
            "root": {"type": "str", "default": "/"},
            "force": {"type": "bool", "default": False},
        },
        required_if=[("state", "present", ["capabilities"])],
        supports_check_mode=True,
    )
    try:
        from capsnap.desired import declare
        from capsnap.errors import CapsnapError
        from capsnap.paths import SystemPaths
    except ImportError:
        module.fail_json(msg="capsnap is not installed on the target (install the capsnap "
                             "package, or pip install capsnap)")
    params = module.params
    try:
        result = declare(SystemPaths(root=params["root"]), params["path"],
                         params["capabilities"], state=params["state"],
                         reason=params["reason"], check_mode=module.check_mode,
                         force=params["force"])
    except CapsnapError as exc:
        module.fail_json(msg=str(exc))
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
