// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";

/// Checks a contract account's signature without being deployed: the node
/// runs its creation code in an eth_call (no `to`), and the constructor
/// returns one byte, 1 if the signature is valid. A signature wrapped as
/// ERC-6492 (factory, factory calldata, signature, then the magic suffix)
/// for an account not deployed yet first deploys it, inside that call only,
/// through its factory. An account with code is asked with ERC-1271's
/// isValidSignature. (Externally owned accounts are checked by the node
/// itself, by recovering the signer.)
contract SignatureCheck {
    bytes32 private constant ERC6492_SUFFIX = 0x6492649264926492649264926492649264926492649264926492649264926492;

    constructor(address signer, bytes32 hash, bytes memory signature) {
        bool ok = _check(signer, hash, signature);
        assembly {
            mstore(0, ok)
            return(31, 1)
        }
    }

    function _check(address signer, bytes32 hash, bytes memory signature) private returns (bool) {
        bytes memory sig = signature;
        uint256 n = signature.length;
        if (n >= 32 && _tail(signature) == ERC6492_SUFFIX) {
            bytes memory wrapped = new bytes(n - 32);
            for (uint256 i = 0; i < n - 32; i++) {
                wrapped[i] = signature[i];
            }
            (address factory, bytes memory factoryData, bytes memory inner) = abi.decode(wrapped, (address, bytes, bytes));
            if (signer.code.length == 0) {
                (bool deployed,) = factory.call(factoryData);
                if (!deployed) {
                    return false;
                }
            }
            sig = inner;
        }
        if (signer.code.length == 0) {
            return false;
        }
        try IERC1271(signer).isValidSignature(hash, sig) returns (bytes4 magic) {
            return magic == IERC1271.isValidSignature.selector;
        } catch {
            return false;
        }
    }

    function _tail(bytes memory b) private pure returns (bytes32 t) {
        assembly {
            t := mload(add(b, mload(b)))
        }
    }
}
