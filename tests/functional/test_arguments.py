"""Command-line arguments are untrusted: checked by pattern before they touch the node."""

import pytest
from salt.exceptions import CommandExecutionError


@pytest.mark.parametrize(
    ("directory", "words"),
    [
        ("etc/etcd-client", "not an absolute path"),
        ("/etc/etcd-client/../../root", "not a normalised path"),
        ("/etc", "system directory"),
        ("/", "system directory"),
        ("/etc/etcd-client\nx", "control"),
    ],
)
def test_a_client_bundle_directory_is_checked_before_anything_is_made(loaders, tmp_path, directory, words):
    with pytest.raises(CommandExecutionError, match="refused") as err:
        loaders.modules.etcd_tls.client_bundle(directory)
    assert words in str(err.value), str(err.value)
