// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

import {ConstantProductPool} from "./ConstantProductPool.sol";

/// A router over the dev chain's ConstantProductPools with the swap calls
/// of the Uniswap V2 router, so that one action works against it and
/// against the V2-compatible routers of real chains: it pulls the input
/// from the caller (approved beforehand) and pays the output to `to` in the
/// same call, refusing less than amountOutMin or a call after deadline. The
/// recipient and the minimum are arguments, so a delegation can pin them.
contract DemoRouter {
    using SafeERC20 for IERC20;

    mapping(address => mapping(address => ConstantProductPool)) public pools;

    constructor(ConstantProductPool[] memory pools_) {
        for (uint256 i = 0; i < pools_.length; i++) {
            address a = address(pools_[i].token0());
            address b = address(pools_[i].token1());
            require(address(pools[a][b]) == address(0), "DemoRouter: DUPLICATE_POOL");
            pools[a][b] = pools_[i];
            pools[b][a] = pools_[i];
        }
    }

    modifier ensure(uint256 deadline) {
        require(deadline >= block.timestamp, "DemoRouter: EXPIRED");
        _;
    }

    function _pool(address a, address b) private view returns (ConstantProductPool p) {
        p = pools[a][b];
        require(address(p) != address(0), "DemoRouter: NO_POOL");
    }

    /// What swapping amountIn along path gives at each step, now.
    function getAmountsOut(uint256 amountIn, address[] calldata path) public view returns (uint256[] memory amounts) {
        require(path.length >= 2, "DemoRouter: INVALID_PATH");
        amounts = new uint256[](path.length);
        amounts[0] = amountIn;
        for (uint256 i = 0; i + 1 < path.length; i++) {
            amounts[i + 1] = _pool(path[i], path[i + 1]).getAmountOut(path[i], amounts[i]);
        }
    }

    /// Swaps exactly amountIn of path[0], pulled from the caller, along path;
    /// the last token goes to `to`.
    function swapExactTokensForTokens(
        uint256 amountIn,
        uint256 amountOutMin,
        address[] calldata path,
        address to,
        uint256 deadline
    ) external ensure(deadline) returns (uint256[] memory amounts) {
        amounts = getAmountsOut(amountIn, path);
        require(amounts[amounts.length - 1] >= amountOutMin, "DemoRouter: INSUFFICIENT_OUTPUT_AMOUNT");
        IERC20(path[0]).safeTransferFrom(msg.sender, address(_pool(path[0], path[1])), amountIn);
        for (uint256 i = 0; i + 1 < path.length; i++) {
            address dest = i + 2 < path.length ? address(_pool(path[i + 1], path[i + 2])) : to;
            _pool(path[i], path[i + 1]).swap(path[i], amounts[i + 1], dest);
        }
    }
}
