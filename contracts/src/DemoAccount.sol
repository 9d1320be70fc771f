// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";

/// A minimal smart-contract account for the Spells dev chain: it holds
/// nothing and signs (ERC-1271) with its owner's key. It shows sign-in by
/// a contract account, deployed or not yet (ERC-6492).
contract DemoAccount is IERC1271 {
    address public immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(hash, signature);
        if (err == ECDSA.RecoverError.NoError && signer == owner) {
            return IERC1271.isValidSignature.selector;
        }
        return 0xffffffff;
    }
}

/// Deploys DemoAccounts at addresses known in advance (CREATE2).
contract DemoAccountFactory {
    function deploy(address owner, bytes32 salt) external returns (address) {
        return address(new DemoAccount{salt: salt}(owner));
    }

    function addressOf(address owner, bytes32 salt) external view returns (address) {
        bytes32 h = keccak256(
            abi.encodePacked(bytes1(0xff), address(this), salt, keccak256(abi.encodePacked(type(DemoAccount).creationCode, abi.encode(owner))))
        );
        return address(uint160(uint256(h)));
    }
}
