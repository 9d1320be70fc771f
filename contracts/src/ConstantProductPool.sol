// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// A small constant-product market (x * y = k, 0.3 % fee) between two
/// tokens, for the Spells dev chain.
///
/// A swap is paid in advance: the payer transfers tokenIn to the pool, then
/// calls swap, which takes as input whatever the pool holds of tokenIn above
/// its reserve. So a smart account can swap with two plain calls (a token
/// transfer and a swap) that delegation caveats can bound one by one, in one
/// transaction. swapExactIn pulls the input with transferFrom instead, for
/// accounts that approved the pool.
contract ConstantProductPool is ReentrancyGuard {
    using SafeERC20 for IERC20;

    IERC20 public immutable token0;
    IERC20 public immutable token1;
    uint256 public reserve0;
    uint256 public reserve1;

    uint256 public constant FEE_BPS = 30;

    event Swap(address indexed sender, address indexed tokenIn, uint256 amountIn, uint256 amountOut, address indexed to);
    event Sync(uint256 reserve0, uint256 reserve1);

    constructor(IERC20 token0_, IERC20 token1_) {
        require(address(token0_) != address(token1_), "ConstantProductPool:same-token");
        token0 = token0_;
        token1 = token1_;
    }

    /// Adds liquidity pulled from the sender (no shares: a dev pool).
    function addLiquidity(uint256 amount0, uint256 amount1) external nonReentrant {
        token0.safeTransferFrom(msg.sender, address(this), amount0);
        token1.safeTransferFrom(msg.sender, address(this), amount1);
        _sync();
    }

    /// What swapping amountIn of tokenIn would give now.
    function getAmountOut(address tokenIn, uint256 amountIn) public view returns (uint256) {
        (uint256 rIn, uint256 rOut) = _reserves(tokenIn);
        require(rIn > 0 && rOut > 0, "ConstantProductPool:no-liquidity");
        uint256 inAfterFee = amountIn * (10_000 - FEE_BPS);
        return (inAfterFee * rOut) / (rIn * 10_000 + inAfterFee);
    }

    /// The price of token0 in token1, scaled by 1e18.
    function price() external view returns (uint256) {
        require(reserve0 > 0, "ConstantProductPool:no-liquidity");
        return (reserve1 * 1e18) / reserve0;
    }

    /// Swaps what was transferred to the pool of tokenIn above its reserve
    /// for the other token, sent to `to`; reverts below minAmountOut.
    function swap(address tokenIn, uint256 minAmountOut, address to) external nonReentrant returns (uint256 amountOut) {
        (uint256 rIn,) = _reserves(tokenIn);
        uint256 amountIn = IERC20(tokenIn).balanceOf(address(this)) - rIn;
        require(amountIn > 0, "ConstantProductPool:no-input");
        amountOut = _swapOut(tokenIn, amountIn, minAmountOut, to);
    }

    /// Pulls amountIn of tokenIn from the sender (approved beforehand) and
    /// swaps it.
    function swapExactIn(address tokenIn, uint256 amountIn, uint256 minAmountOut, address to)
        external
        nonReentrant
        returns (uint256 amountOut)
    {
        require(amountIn > 0, "ConstantProductPool:no-input");
        _reserves(tokenIn);
        IERC20(tokenIn).safeTransferFrom(msg.sender, address(this), amountIn);
        amountOut = _swapOut(tokenIn, amountIn, minAmountOut, to);
    }

    function _swapOut(address tokenIn, uint256 amountIn, uint256 minAmountOut, address to) private returns (uint256 amountOut) {
        amountOut = getAmountOut(tokenIn, amountIn);
        require(amountOut >= minAmountOut, "ConstantProductPool:insufficient-output");
        require(amountOut > 0, "ConstantProductPool:zero-output");
        IERC20 tokenOut = tokenIn == address(token0) ? token1 : token0;
        tokenOut.safeTransfer(to, amountOut);
        _sync();
        emit Swap(msg.sender, tokenIn, amountIn, amountOut, to);
    }

    function _reserves(address tokenIn) private view returns (uint256 rIn, uint256 rOut) {
        if (tokenIn == address(token0)) return (reserve0, reserve1);
        if (tokenIn == address(token1)) return (reserve1, reserve0);
        revert("ConstantProductPool:unknown-token");
    }

    function _sync() private {
        reserve0 = token0.balanceOf(address(this));
        reserve1 = token1.balanceOf(address(this));
        emit Sync(reserve0, reserve1);
    }
}
