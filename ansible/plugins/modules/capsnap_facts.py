#!/usr/bin/python
# Copyright: 2026 capsnap developers
# GNU General Public License v2.0 or later (see COPYING or https://www.gnu.org/licenses/gpl-2.0.txt)

DOCUMENTATION = r"""
---
module: capsnap_facts
short_description: Declared file capabilities, their drift, and the last transaction's changes
description:
  - Returns, as the fact C(capsnap), the capability declarations on the target by source
    (dpkg, rpm, local), the drift capsnap's C(check) finds (declared capabilities not in
    place), and what the last package-manager transaction changed (C(capsnap diff)).
  - Reads only; never changes the target.
version_added: "0.1.0"
options:
  root:
    description: The system to look at.
    type: str
    default: /
requirements:
  - capsnap (the Python package) on the target
author:
  - capsnap developers
"""

EXAMPLES = r"""
- name: Gather capsnap facts
  capsnap.fleet.capsnap_facts:

- name: Say which hosts drifted
  ansible.builtin.debug:
    msg: "{{ ansible_facts.capsnap.drift }}"
  when: ansible_facts.capsnap.drifted
"""

RETURN = r"""
ansible_facts:
  description: C(capsnap) with C(declarations) (by source), C(drift) (list of findings),
    C(drifted) (bool), C(problems) (list) and C(last_transaction) (or null).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec={"root": {"type": "str", "default": "/"}},
                           supports_check_mode=True)
    try:
        from capsnap.desired import facts
        from capsnap.errors import CapsnapError
        from capsnap.paths import SystemPaths
    except ImportError:
        module.fail_json(msg="capsnap is not installed on the target (install the capsnap "
                             "package, or pip install capsnap)")
    try:
        gathered = facts(SystemPaths(root=module.params["root"]))
    except CapsnapError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, ansible_facts={"capsnap": gathered})


if __name__ == "__main__":
    main()
