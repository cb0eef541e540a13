"""Reference servers' backups, from the controller: the escrowed repository password
(:mod:`~ctfleet.backups.escrow`) and the restore drill's verdict
(:mod:`~ctfleet.backups.drill`). The backups themselves run on the servers (restic,
systemd timer, off-site copy over SFTP): ``playbooks/roles/reference_server`` SRV-3..5.
"""
