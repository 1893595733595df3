"""The soak's reference application: a bank (docs/soak.md).

Accounts are actors with durable mailboxes whose state is an append-only journal on disk;
tellers move money between them by call and by durable cast, through registered names; an
auditor sums what the accounts hold and what is in flight between them.
"""
